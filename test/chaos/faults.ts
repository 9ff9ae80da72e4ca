// The fault suite's faults other than a kill, each tried while the steady machine replicates under
// its writer: storage throttling (503 + Retry-After from a proxy), the process server's disk full
// (its state and temp folder on a small tmpfs), clock skew (the process server on a clock ahead,
// through libfaketime), the link between the sites cut (the process server in a network namespace
// of its own) and Temporal lost with the primary site (a new, empty Temporal and the vault).
// Each records what the operator saw meanwhile and checks that nothing acknowledged was lost.
import fs from 'node:fs';
import path from 'node:path';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import { azuriteConnectionString } from '../../lib/azure/blob-client';
import { loadKeyFile } from '../../lib/segments/keys';
import { listAlerts, type OsrAlert } from '../../operations/alerts';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { CLOCK_SKEW_ALERT_MS } from '../../shared/point-order';
import type { RecoveryPoint } from '../../shared/replication-types';
import type { WorkerRole } from '../../stack/stack';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import type { Chaos } from './chaos';
import { Netns, mountTmpfs, unmount } from './fault-env';
import { cleanUp, eventually, sleep, type Fault, type Trial } from './trials';

/** More than a hold (20 s) and two restarts: skewed labels stand apart from true ones. */
const SKEW_SECONDS = 90;
const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

export class FaultTrials {
  private proxy?: FaultProxy;
  private netns?: Netns;
  private tmpfs?: string;
  /** The relay to Temporal on the host end of the link (reachable only while the link is up). */
  private temporalRelay = 0;

  constructor(
    private readonly chaos: Chaos,
    /** How long each fault lasts. */
    private readonly holdMs = 20_000,
  ) {}

  /** Before the workers start: the proxy, the namespace and the tmpfs the faults act on. */
  async prepare(faults: Fault[]): Promise<void> {
    const { stack } = this.chaos;
    const keyFile = path.join(stack.stateDir, 'keys', 'osr.key');
    await loadKeyFile(keyFile, { create: true }); // one key for every worker, whatever its state folder
    let storagePort = stack.config.storage.azuritePort;
    if (faults.includes('throttle')) {
      this.proxy = await startFaultProxy(storagePort);
      storagePort = this.proxy.port;
      for (const role of ['cloud-applier', 'control'] as const)
        this.chaos.launch.set(role, {
          env: { OSR_STORAGE_CONNECTION_STRING: azuriteConnectionString(storagePort) },
        });
    }
    const ps: NodeJS.ProcessEnv = {
      OSR_KEY_FILE: keyFile,
      OSR_STORAGE_CONNECTION_STRING: azuriteConnectionString(storagePort),
    };
    let prefix: string[] | undefined;
    if (faults.includes('disk-full')) {
      this.tmpfs = await mountTmpfs(16);
      fs.mkdirSync(path.join(this.tmpfs, 'tmp'));
      // Heartbeats every 2 s: the state-disk-full alert shows within the fault's seconds.
      Object.assign(ps, {
        OSR_STATE_DIR: this.tmpfs,
        TMPDIR: path.join(this.tmpfs, 'tmp'),
        OSR_HEARTBEAT_SECONDS: '2',
      });
    }
    if (faults.includes('link')) {
      this.netns = await Netns.create();
      this.temporalRelay = await this.netns.relay(stack.config.temporal.port);
      const storage = await this.netns.relay(storagePort);
      Object.assign(ps, {
        OSR_TEMPORAL_ADDRESS: `${this.netns.hostAddress}:${this.temporalRelay}`,
        OSR_STORAGE_CONNECTION_STRING: azuriteConnectionString(storage, this.netns.hostAddress),
      });
      prefix = this.netns.exec;
    }
    this.chaos.launch.set('process-server', { env: ps, prefix });
  }

  async cleanUp(): Promise<void> {
    await this.netns?.remove();
    if (this.tmpfs) await unmount(this.tmpfs);
    this.netns = undefined;
    this.tmpfs = undefined;
    void this.proxy?.close(); // its last keep-alive connections may linger: not waited for
  }

  async trial(fault: Fault): Promise<Trial> {
    const run = {
      throttle: this.throttle,
      'disk-full': this.diskFull,
      'clock-skew': this.clockSkew,
      link: this.link,
      'lost-temporal': this.lostTemporal,
    }[fault];
    return this.chaos.checked(fault, 'delta', () => run.call(this), fault !== 'lost-temporal');
  }

  /** What the operator sees of the steady machine, sampled while `hold` runs (distinct lines). */
  private async watch(hold: () => Promise<void>): Promise<string> {
    const seen = new Set<string>();
    let holding = true;
    const sampler = (async () => {
      while (holding) {
        const s = await machines.machineStatus(this.chaos.ctx, 'steady').catch(() => undefined);
        if (s) {
          const alerts = [...new Set(s.alerts.map((a) => a.kind))].join('+') || 'no alert';
          seen.add(
            `${s.state}/${s.health?.level ?? '?'} (${alerts}${s.failing ? `, failing: ${s.failing.reason.slice(0, 80)}` : ''})`,
          );
        } else seen.add('status unavailable');
        await sleep(2000);
      }
    })();
    try {
      await hold();
    } finally {
      holding = false;
      await sampler;
    }
    return [...seen].join('; ');
  }

  /** Time from `since` until the steady machine has a point cut after it. */
  private async resumed(since: number): Promise<number> {
    await eventually('a steady point after the fault', async () =>
      (await this.chaos.ctx.vault.points('steady')).some((p) => Date.parse(p.instant) > since)
        ? true
        : undefined,
    );
    return Date.now() - since;
  }

  private async throttle(): Promise<Partial<Trial>> {
    const proxy = this.proxy;
    if (!proxy) throw new Error('throttle: no proxy (prepare was not told)');
    const hits = proxy.hits.length;
    const rule = {
      match: () => true,
      action: 'throttle' as const,
      times: Infinity,
      share: 0.5,
      retryAfterSeconds: 1,
    };
    const seen = await this.watch(async () => {
      proxy.rules.push(rule);
      await sleep(this.holdMs);
      proxy.rules.splice(proxy.rules.indexOf(rule), 1);
    });
    const throttled = proxy.hits.length - hits;
    const recoveryMs = await this.resumed(Date.now());
    return {
      ok: throttled > 0,
      recoveryMs,
      seen,
      note: `${throttled} requests answered 503 + Retry-After 1 s (every other one, ${this.holdMs / 1000} s)`,
    };
  }

  private async diskFull(): Promise<Partial<Trial>> {
    const dir = this.tmpfs;
    if (!dir) throw new Error('disk-full: no tmpfs (prepare was not told)');
    const filler = path.join(dir, 'filler');
    // What the process server keeps there (so the report says what the full disk could hit).
    const kept = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => f !== 'tmp');
    let filled = 0;
    // The process server's own alerts while its disk is full (the machine's show in `seen`).
    const serverAlerts = new Set<string>();
    const seen = await this.watch(async () => {
      const fd = fs.openSync(filler, 'w');
      try {
        const chunk = Buffer.alloc(256 * 1024, 1);
        for (;;) filled += fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        fs.closeSync(fd);
      }
      const end = Date.now() + this.holdMs;
      while (Date.now() < end) {
        const { alerts } = await listAlerts(this.chaos.ctx).catch(() => ({ alerts: [] as OsrAlert[] }));
        for (const a of alerts) if (a.source === 'server') serverAlerts.add(`${a.kind} (${a.severity})`);
        await sleep(1000);
      }
      fs.rmSync(filler);
    });
    const recoveryMs = await this.resumed(Date.now());
    // The machine's own writes must not fail (checked for every trial, chaos.ts): QEMU gives the
    // point up instead (lib/qemu/fleecing-graph.ts), and the process server says its disk is full.
    return {
      ok: filled > 0 && [...serverAlerts].some((a) => a.startsWith('state-disk-full')),
      recoveryMs,
      seen,
      note: `state and temp full (${(filled / 2 ** 20).toFixed(1)} MiB filler) for ${this.holdMs / 1000} s; the process server kept there: ${kept.join(', ') || 'nothing'}; its alerts meanwhile: ${[...serverAlerts].join(', ') || 'none'}`,
    };
  }

  /**
   * The process server (primary host) on a clock SKEW_SECONDS ahead, then set right. The points it
   * cuts meanwhile keep the skewed reading as their source clock and carry Temporal's time as their
   * instant; they are checked at their true instant (source clock minus the skew). While it lasts
   * the clock-skew alert shows; once set right the alert clears, `latest` is the newest cycle and
   * the list's instants never go backwards.
   */
  private async clockSkew(): Promise<Partial<Trial>> {
    if (!fs.existsSync(FAKETIME_LIB))
      throw new Error(
        `clock-skew needs ${FAKETIME_LIB}: apt-get install faketime (npm test's setup installs it)`,
      );
    const skewMs = SKEW_SECONDS * 1000;
    const { ctx } = this.chaos;
    const before = Math.max(0, ...(await ctx.vault.points('steady')).map((p) => p.cycle));
    const base = this.chaos.launch.get('process-server') ?? {};
    const restart = async (env: NodeJS.ProcessEnv) => {
      await this.chaos.stack.killWorker('process-server');
      await this.chaos.startWorker('process-server', env);
    };
    /** How far a point's source clock is from its instant (0 before points kept it). */
    const offBy = (p: RecoveryPoint) =>
      p.sourceInstant ? Date.parse(p.sourceInstant) - Date.parse(p.instant) : 0;
    let alertedWhileSkewed = false;
    const seen = await this.watch(async () => {
      await restart({
        ...base.env,
        LD_PRELOAD: FAKETIME_LIB,
        FAKETIME: `+${SKEW_SECONDS}s`,
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      });
      const skewedFrom = Date.now();
      // The skew lasts until a point was cut on it and alerted (a loaded machine may take longer
      // than the hold for the restarted server's first cycle), and at least the hold.
      await eventually('a point cut on the skewed clock, with the clock-skew alert', async () => {
        const cut = (await ctx.vault.points('steady')).some(
          (p) => p.cycle > before && offBy(p) > CLOCK_SKEW_ALERT_MS,
        );
        const status = await machines.machineStatus(ctx, 'steady');
        alertedWhileSkewed ||= status.alerts.some((a) => a.kind === 'clock-skew');
        return cut && alertedWhileSkewed ? true : undefined;
      });
      const left = this.holdMs - (Date.now() - skewedFrom);
      if (left > 0) await sleep(left);
      await restart(base.env ?? {});
    });
    const fixedAt = Date.now();
    const first = await eventually('a point on the right clock', async () =>
      (await ctx.vault.points('steady')).find(
        (p) =>
          p.cycle > before && Date.parse(p.instant) >= fixedAt && Math.abs(offBy(p)) < CLOCK_SKEW_ALERT_MS,
      ),
    );
    const recoveryMs = Date.now() - fixedAt;
    const status = await machines.machineStatus(ctx, 'steady');
    const stillAlerted = status.alerts.some((a) => a.kind === 'clock-skew');
    const points = await ctx.vault.points('steady');
    const skewed = new Set(
      points.filter((p) => p.cycle > before && offBy(p) > CLOCK_SKEW_ALERT_MS).map((p) => p.id),
    );
    this.chaos.trueInstant = (p) =>
      skewed.has(p.id) && p.sourceInstant ? Date.parse(p.sourceInstant) - skewMs : Date.parse(p.instant);
    // Just after the clock is set right: `latest` is the newest cycle, labels are not in the future.
    const latest = points.at(-1);
    const newest = [...points].sort((a, b) => b.cycle - a.cycle)[0];
    const stale = latest?.id !== newest?.id;
    const backwards = points.some((p, i) => i > 0 && p.instant < (points[i - 1] as RecoveryPoint).instant);
    const future = points.filter((p) => skewed.has(p.id) && Date.parse(p.instant) > fixedAt).length;
    const alerted = alertedWhileSkewed || seen.includes('clock-skew');
    const problems = [
      skewed.size ? '' : 'no point cut on the skewed clock',
      alerted ? '' : 'no clock-skew alert while the clock was ahead',
      stillAlerted ? `the clock-skew alert stayed after ${first.id}, cut on the right clock` : '',
      stale ? `"latest" was ${latest?.id}, NOT the newest cycle ${newest?.id}` : '',
      backwards ? 'instants go backwards in the list' : '',
      future ? `${future} points labelled after the clock was set right` : '',
    ].filter(Boolean);
    return {
      ok: problems.length === 0,
      recoveryMs,
      seen: `${seen}; ${skewed.size} points with a source clock ${SKEW_SECONDS} s ahead, labelled by Temporal; after the clock was set right, "latest" was ${latest?.id}${problems.length ? ` (FAIL: ${problems.join('; ')})` : ' (the newest cycle), the alert cleared'}`,
      note: 'points cut on the skewed clock are checked at their true instant (source clock minus the skew)',
    };
  }

  private async link(): Promise<Partial<Trial>> {
    const ns = this.netns;
    if (!ns) throw new Error('link: no namespace (prepare was not told)');
    let cut = false;
    const seen = await this.watch(async () => {
      await ns.link(false);
      cut = !(await ns.reachable(this.temporalRelay));
      await sleep(this.holdMs);
      await ns.link(true);
    });
    const recoveryMs = await this.resumed(Date.now());
    return {
      ok: cut,
      recoveryMs,
      seen,
      note: cut ? `link down ${this.holdMs / 1000} s, then up` : 'the link did not go down',
    };
  }

  /**
   * The primary site (steady machine, its writer, every worker) and Temporal's database are lost;
   * a new, empty Temporal and a control worker and applier restarted elsewhere must still list
   * the steady machine from the vault, drill it and fail it over to the source at a point's instant.
   */
  private async lostTemporal(): Promise<Partial<Trial>> {
    const { stack, ctx, writer } = this.chaos;
    await writer.stop();
    const lostAt = Date.now();
    for (const role of ['process-server', 'control', 'cloud-applier', 'master-target'] as WorkerRole[])
      await stack.killWorker(role).catch(() => undefined);
    await this.chaos.steady.stop();
    await stack.crashServer('temporal');
    fs.rmSync(path.join(stack.stateDir, 'temporal'), { recursive: true, force: true });
    await stack.restartServer('temporal');
    await this.chaos.startWorker('control');
    await this.chaos.startWorker('cloud-applier');
    const listed = await eventually('steady listed', async () =>
      (await machines.listMachines(ctx)).some((m) => m.machine === 'steady') ? true : undefined,
    );
    const points = await ctx.vault.points('steady');
    const last = points.at(-1);
    if (!last) throw new Error('no point of steady in the vault');
    const drill = await failover.startTestFailover(ctx, 'steady', { wait: true, another: true });
    const instant = this.chaos.trueInstant(last);
    const drilled = await this.recoveredCheck(drill.status, instant);
    await cleanUp(ctx, drill.ref.job, 'temporal');
    const fo = await failover.startFailover(ctx, 'steady', {});
    const failedOver = await this.recoveredCheck(fo.status, instant);
    const recoveryMs = Date.now() - lostAt;
    const rpo = writer.acknowledged - writer.ackedBefore(instant);
    return {
      ok:
        listed &&
        !drilled.lost &&
        !drilled.corrupt &&
        !failedOver.lost &&
        !failedOver.corrupt &&
        fo.status?.state === 'failed-over',
      lostWrites: drilled.lost + failedOver.lost,
      corruptPoints: (drilled.corrupt ? 1 : 0) + (failedOver.corrupt ? 1 : 0),
      pointsChecked: 2,
      records: drilled.records + failedOver.records,
      recoveryMs,
      seen: `listed from the vault with ${points.length} points; drill ${drill.status?.state}, failover ${fo.status?.state} at ${last.id}; ${rpo} records written after that point went with the site (the RPO)`,
    };
  }

  /** A drill or failover disk of steady against the source at the point's instant. */
  private async recoveredCheck(status: RecoveryStatus | undefined, instant: number) {
    const disk = status?.disks.find((d) => d.diskId === 'disk0');
    if (!disk) throw new Error(`no recovered disk0 (${status?.state}: ${status?.error ?? ''})`);
    const image = await failoverBlobClient(this.chaos.ctx.blobService, disk.blob).downloadToBuffer(
      0,
      this.chaos.writer.usedBytes,
    );
    return this.chaos.writer.check(async (o, l) => image.subarray(o, o + l), instant);
  }
}
