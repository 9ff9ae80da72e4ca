// The kill -9 trials of the fault suite: one victim killed at a random moment of an initial sync,
// of delta cycles, of a drill or of a reprotect, restarted, and the job left to finish by itself.
// Whatever the phase, the steady machine's writer runs through the outage and every point cut
// during the trial is checked against it (ContinuousWriter); a kill counts as landing mid-work
// only when Temporal shows the victim holding an activity just before and just after it.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import type { ControlContext } from '../../operations/context';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import type { WorkerRole } from '../../stack/stack';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { reprotectTrial } from './reprotect';
import { activitiesInFlight, azuriteLastSave, heldThrough, workerIdentity, type InFlight } from './landing';
import { cleanUp, eventually, sleep, snapshotRange, type Phase, type Trial, type Victim } from './trials';
import { ContinuousWriter } from './writer';
import { watchResume, type ResumeWatch } from './resumed';
import { servers, victimWorker, withPartner } from './handover';

const MiB = 1024 * 1024;
export const STEADY_DISK = 192 * MiB;
/** A point's catalog entry is written this long after its instant at most (a slow TCG machine). */
const CATALOG_LAG_MS = 3000;
/** A record acknowledged by the source reaches the replica this long after at most: the next
 * 2-s cycle's transfer and apply (a slow TCG machine). */
const APPLY_LAG_MS = 10_000;

export interface Crash {
  at: number;
  /** The activity the kill landed on ("" when none was seen in flight through it). */
  landedOn: string;
  /** Azurite's last metadata save before the kill (Azurite victims). */
  lastSave?: number;
  /** When the kill landed on nothing: what was seen in flight. */
  missed?: string;
  /** When steady's replication was seen resuming after the restart (resumed.ts). */
  resumed?: ResumeWatch;
}

export class Chaos {
  steady!: TestMachine;
  writer!: ContinuousWriter;
  /** Running workers by name: their role, or PARTNER for the handover trials' second process server. */
  readonly pids = new Map<string, number>();
  /** How each worker is started (faults.ts puts some behind a proxy, in a namespace, on a tmpfs). */
  readonly launch = new Map<WorkerRole, { env?: NodeJS.ProcessEnv; prefix?: string[] }>();
  /** Azurite's unsaved windows at its kills: [older metadata save - apply lag, kill]. */
  private readonly unsaved: Array<{ from: number; to: number }> = [];
  /** The last kill of the running trial. */
  private lastCrash?: Crash;
  /** A point's true instant (its label, unless a fault skewed the clock that cut it). */
  trueInstant = (p: { id: string; instant: string; sourceInstant?: string }) => Date.parse(p.instant);

  constructor(
    readonly stack: TestStack,
    readonly ctx: ControlContext,
    readonly random: () => number,
  ) {}

  /** Starts a worker as launched for the suite, or with `env` instead of its usual extra env. */
  async startWorker(role: WorkerRole, env?: NodeJS.ProcessEnv, name: string = role): Promise<void> {
    const how = this.launch.get(role) ?? {};
    const proc = await this.stack.startWorker(role, env ?? how.env, { prefix: how.prefix, name });
    this.pids.set(name, proc.pid);
  }

  async setUp(): Promise<void> {
    await createPolicy(this.ctx, {
      name: 'chaos',
      crashPointSeconds: 2,
      appPointSeconds: 0,
      rpoThresholdSeconds: 120,
    });
    this.steady = await startTestMachine({ sizes: [STEADY_DISK] });
    this.writer = new ContinuousWriter(await this.steady.disk(), STEADY_DISK);
    this.writer.start();
    await machines.protect(this.ctx, {
      name: 'steady',
      qmpSocket: this.steady.daemon.qmpSocket,
      nbdSocket: this.steady.daemon.nbdSocket,
      policy: 'chaos',
    });
    await eventually('steady protected', async () =>
      (await machines.machineStatus(this.ctx, 'steady')).state === 'protected' ? true : undefined,
    );
    // Azurite saves every 5 s: a kill before its next save would forget steady's registration
    // (then no drill or failover of it: "no protected machine named steady"), not what a trial tries.
    const registered = Date.now();
    await eventually('Azurite saved the registration', async () =>
      azuriteLastSave(path.join(this.stack.stateDir, 'azurite')) > registered ? true : undefined,
    );
  }

  async tearDown(): Promise<void> {
    await this.writer?.stop();
    await this.steady?.stop();
  }

  /** Work in flight the kill of `victim` would land on: its own activities, or any for the servers. */
  private async inFlightFor(victim: Victim): Promise<InFlight[]> {
    const held = victim === 'control' ? [] : servers(this, victim).map((w) => workerIdentity(w.pid));
    const all = await activitiesInFlight(this.stack.client);
    return held.length ? all.filter((a) => held.includes(a.worker)) : all;
  }

  /** kill -9 once the victim has work in flight (waiting up to 20 s for some), then restart it;
   * a handover victim is not: the other process server must take its work over (handover.ts). */
  async crash(victim: Victim): Promise<Crash> {
    const until = Date.now() + 20_000;
    let before = await this.inFlightFor(victim).catch(() => []);
    while (!before.length && Date.now() < until) {
      await sleep(100);
      before = await this.inFlightFor(victim).catch(() => []);
    }
    const target = victimWorker(this, victim, before);
    if (victim === 'handover') before = before.filter((a) => a.worker === workerIdentity(target?.pid ?? 0));
    const lastSave =
      victim === 'azurite' ? azuriteLastSave(path.join(this.stack.stateDir, 'azurite')) : undefined;
    const at = Date.now();
    if (lastSave !== undefined) this.unsaved.push({ from: lastSave - APPLY_LAG_MS, to: at });
    if (victim === 'temporal' || victim === 'azurite') await this.stack.crashServer(victim);
    else await this.kill(target?.name ?? victim);
    // Temporal itself is gone: what it held just before is all there is to see. A control worker
    // holds no activity: a job of its was mid-way (its result will need a new control worker) when
    // Temporal showed one of the job's activities started just before the kill.
    const beforeOnly = victim === 'temporal' || victim === 'control';
    const after = beforeOnly
      ? before
      : (await activitiesInFlight(this.stack.client).catch(() => [])).filter(
          (a) => !target || a.worker === workerIdentity(target.pid),
        );
    const held = heldThrough(before, after);
    if (victim === 'temporal' || victim === 'azurite') await this.stack.restartServer(victim);
    else if (victim !== 'handover') await this.startWorker(victim as WorkerRole);
    const since = victim === 'handover' ? at : Date.now();
    const resumed = watchResume(() => this.ctx.vault.points('steady'), this.trueInstant, since);
    this.lastCrash?.resumed?.stop();
    this.lastCrash = undefined;
    const missed = `none held through (before: ${before.map((a) => `${a.activityType}@${a.worker}`).join(', ') || 'nothing'}; victim ${workerIdentity(target?.pid ?? 0)})`;
    this.lastCrash = {
      at,
      lastSave,
      landedOn: held[0] ? `${held[0].activityType} (${held[0].workflowId})` : '',
      missed,
      resumed,
    };
    return this.lastCrash;
  }

  /** kill -9 of a worker by name; it is no longer running. */
  async kill(name: string): Promise<void> {
    await this.stack.killWorker(name);
    this.pids.delete(name);
  }

  /** Whether a forgotten item, first possibly written at `writtenFrom`, fell in Azurite's unsaved window. */
  static forgettable(crash: Crash, writtenFrom: number): boolean {
    return (
      crash.lastSave !== undefined && writtenFrom > crash.lastSave - CATALOG_LAG_MS && writtenFrom < crash.at
    );
  }

  async trial(victim: Victim, phase: Phase): Promise<Trial> {
    const run =
      phase === 'initial-sync'
        ? this.initialSync
        : phase === 'delta'
          ? this.delta
          : phase === 'reprotect'
            ? (v: Victim) => reprotectTrial(this, v)
            : this.drill;
    const checked = () => this.checked(victim, phase, () => run.call(this, victim));
    return victim === 'handover' ? withPartner(this, checked) : checked();
  }

  /** Runs one trial, then (unless the steady machine is gone) checks its points against the writer. */
  async checked(
    victim: Trial['victim'],
    phase: Phase,
    run: () => Promise<Partial<Trial>>,
    steadyCheck = true,
  ): Promise<Trial> {
    const base: Trial = {
      victim,
      phase,
      ok: false,
      lostWrites: 0,
      corruptPoints: 0,
      pointsChecked: 0,
      recoveryMs: 0,
    };
    const start = Date.now();
    const from = this.writer.currentRegion;
    const failedWrites = this.writer.failedWrites;
    let t: Trial;
    try {
      t = { ...base, ...(await run()) };
    } catch (err) {
      t = { ...base, note: (err as Error).message.slice(0, 300) };
    }
    if (this.writer.failedWrites > failedWrites) {
      t.ok = false;
      t.note = `${t.note ? `${t.note}; ` : ''}the protected machine's own writes failed ${this.writer.failedWrites - failedWrites} times during the trial (${this.writer.lastWriteError})`;
    }
    if (this.lastCrash && !t.landedOn) t.note = `${t.note ? `${t.note}; ` : ''}kill ${this.lastCrash.missed}`;
    const crash = this.lastCrash;
    this.lastCrash = undefined;
    if (!steadyCheck) {
      crash?.resumed?.stop();
      return t;
    }
    // Recovery is also until steady's replication resumed: the kill stopped its cycles too.
    const resumedAt = await crash?.resumed?.seenAt;
    if (crash && resumedAt) t.recoveryMs = Math.max(t.recoveryMs, resumedAt - crash.at);
    try {
      const steady = await this.checkSteady(start, from);
      t.lostWrites += steady.lost;
      t.corruptPoints += steady.corrupt;
      t.pointsChecked += steady.points;
      t.records = steady.records;
      if (steady.forgotten) t.forgotten = (t.forgotten ?? 0) + steady.forgotten;
      if (steady.lost || steady.corrupt || steady.forgotten) {
        t.ok = t.ok && !steady.lost && !steady.corrupt;
        t.note = `${t.note ? `${t.note}; ` : ''}steady ${steady.detail ?? ''}`;
      }
    } catch (err) {
      t.ok = false;
      t.note = `${t.note ? `${t.note}; ` : ''}steady: ${(err as Error).message.slice(0, 200)}`;
    }
    if (this.writer.stopReason) {
      t.ok = false;
      t.note = `${t.note ? `${t.note}; ` : ''}writer stopped: ${this.writer.stopReason}`;
    }
    return t;
  }

  /** Every steady point cut since `start`, against the writer; and one cut after now must exist. */
  async checkSteady(start: number, from: number) {
    const now = Date.now();
    await eventually('a steady point after the trial', async () =>
      (await this.ctx.vault.points('steady')).some((p) => this.trueInstant(p) > now) ? true : undefined,
    );
    const points = (await this.ctx.vault.points('steady')).filter((p) => this.trueInstant(p) >= start);
    let lost = 0;
    let corrupt = 0;
    let records = 0;
    let forgotten = 0;
    let detail: string | undefined;
    for (const point of points) {
      const c = await this.writer.check(
        (o, l) => snapshotRange(this.ctx, point, o, l),
        this.trueInstant(point),
        from,
      );
      // Records Azurite may have forgotten (written to it in its unsaved seconds before a kill).
      const forgiven = c.lostAckedAt.filter((t) => this.unsaved.some((w) => t > w.from && t < w.to));
      lost += c.lost - forgiven.length;
      forgotten += forgiven.length;
      corrupt += c.corrupt ? 1 : 0;
      records += c.records;
      if (c.detail && !detail)
        detail = `point ${point.id}: ${c.detail}; ${this.lossTimes(c.lostAckedAt, forgiven.length)}`;
    }
    return { lost, corrupt, points: points.length, records, detail, forgotten };
  }

  /** When lost records were acknowledged, beside Azurite's unsaved windows (times of day, UTC). */
  private lossTimes(ackedAt: number[], forgiven: number): string {
    const hms = (t: number) => new Date(t).toISOString().slice(11, 23);
    const windows = this.unsaved.map((w) => `${hms(w.from + APPLY_LAG_MS)}..${hms(w.to)}`);
    return `lost records acknowledged at ${ackedAt.slice(0, 3).map(hms).join(', ') || '-'}${ackedAt.length > 3 ? ', ...' : ''}; ${forgiven} of them in Azurite's unsaved windows (last full save..kill: ${windows.join(', ') || 'none'}, less ${APPLY_LAG_MS / 1000} s of apply lag)`;
  }

  /** A new machine's initial sync, crashed at a random moment; its first point must equal the source. */
  private async initialSync(victim: Victim): Promise<Partial<Trial>> {
    const name = `sync-${randomBytes(3).toString('hex')}`;
    const vm = await startTestMachine({ sizes: [24 * MiB] });
    try {
      const disk = await vm.disk();
      for (let off = 0; off < 24 * MiB; off += 4 * MiB) await disk.write(off, pseudoRandom(3 * MiB, off + 7));
      await disk.flush();
      const source = await vm.readAll();
      await machines.protect(this.ctx, {
        name,
        qmpSocket: vm.daemon.qmpSocket,
        nbdSocket: vm.daemon.nbdSocket,
        policy: 'chaos',
      });
      await sleep(this.random() * 3000);
      const crash = await this.crash(victim);
      const status = await eventually(`${name} protected`, async () => {
        const s = await machines.machineStatus(this.ctx, name);
        return s.state === 'protected' && s.lastPoint ? s : undefined;
      });
      const recoveryMs = Date.now() - crash.at;
      const point = (await this.ctx.vault.points(name)).find((p) => p.id === status.lastPoint?.id);
      const landedOn = crash.landedOn;
      if (!point) {
        await eventually('unprotect', () => machines.unprotect(this.ctx, name));
        const instant = Date.parse(status.lastPoint?.instant ?? '');
        const inWindow = Chaos.forgettable(crash, instant);
        return {
          ok: inWindow,
          forgotten: 1,
          recoveryMs,
          landedOn,
          note: `first point (cut ${((crash.at - instant) / 1000).toFixed(1)} s before the kill, Azurite saved ${(((crash.lastSave ?? 0) - instant) / 1000).toFixed(1)} s after it) forgotten by storage${inWindow ? '' : ': NOT in its unsaved window'}`,
        };
      }
      const image = await snapshotRange(this.ctx, point, 0, source.length);
      const corrupt = image.equals(source) ? 0 : 1;
      await eventually('unprotect', () => machines.unprotect(this.ctx, name));
      return { ok: corrupt === 0, corruptPoints: corrupt, pointsChecked: 1, recoveryMs, landedOn };
    } finally {
      await vm.stop();
    }
  }

  /** Delta cycles of the steady machine under its writer, crashed at a random moment. */
  private async delta(victim: Victim): Promise<Partial<Trial>> {
    await sleep(500 + this.random() * 3000);
    const crash = await this.crash(victim);
    const restartedAt = Date.now();
    await eventually('a point after the restart', async () => {
      const points = await this.ctx.vault.points('steady');
      return points.some((p) => this.trueInstant(p) > restartedAt) ? true : undefined;
    });
    return { ok: true, recoveryMs: Date.now() - crash.at, landedOn: crash.landedOn };
  }

  /** A drill of the steady machine crashed at a random moment; its disk must be the point and the
   * source at the point's instant. */
  private async drill(victim: Victim): Promise<Partial<Trial>> {
    const requestedAt = Date.now();
    const { ref } = await eventually('drill started', () =>
      // A trial whose cleanup storage forgot may leave a drill on record: each trial drills anew.
      failover.startTestFailover(this.ctx, 'steady', { wait: false, another: true }),
    );
    await sleep(this.random() * 2500);
    const crash = await this.crash(victim);
    const landedOn = crash.landedOn;
    const status = await eventually('drill ready', async () => {
      const handle = (await this.ctx.client()).workflow.getHandle(ref.workflowId);
      const s = (await handle.query('status')) as RecoveryStatus;
      if (s.state === 'failed') throw new Error(`drill failed: ${s.error}`);
      return s.state === 'ready' ? s : undefined;
    });
    const recoveryMs = Date.now() - crash.at;
    const forgot = (what: string, from: number): Partial<Trial> => {
      const inWindow = Chaos.forgettable(crash, from);
      return {
        ok: inWindow,
        forgotten: 1,
        recoveryMs,
        landedOn,
        note: `${what} forgotten by storage${inWindow ? '' : ': NOT in its unsaved window'}`,
      };
    };
    const point = (await this.ctx.vault.points('steady')).find((p) => p.id === status.point?.id);
    if (!point) {
      await cleanUp(this.ctx, ref.job, victim);
      return forgot(`point ${status.point?.id}`, Date.parse(status.point?.instant ?? ''));
    }
    const used = this.writer.usedBytes;
    const expected = await snapshotRange(this.ctx, point, 0, used);
    const disk = status.disks.find((d) => d.diskId === 'disk0');
    let actual: Buffer;
    try {
      actual = disk
        ? await failoverBlobClient(this.ctx.blobService, disk.blob).downloadToBuffer(0, used)
        : Buffer.alloc(0);
    } catch (err) {
      if (victim !== 'azurite' || (err as { statusCode?: number }).statusCode !== 404) throw err;
      await cleanUp(this.ctx, ref.job, victim);
      return forgot(`disk of drill ${ref.job}`, requestedAt);
    }
    // The drill's disk against the source at the point's instant, not only against the point.
    const source = actual.length
      ? await this.writer.check(async (o, l) => actual.subarray(o, o + l), Date.parse(point.instant))
      : undefined;
    const corrupt = actual.equals(expected) && source && !source.corrupt && !source.lost ? 0 : 1;
    const forgotten = await cleanUp(this.ctx, ref.job, victim);
    const ok = corrupt === 0 && (!forgotten || Chaos.forgettable(crash, requestedAt));
    return {
      ok,
      corruptPoints: corrupt,
      lostWrites: source?.lost ?? 0,
      pointsChecked: 1,
      recoveryMs,
      forgotten,
      landedOn,
    };
  }
}
