// The fault suite (`npm run chaos`): kill -9 an OSR worker, the Temporal server (restarted on its
// SQLite file) or Azurite (restarted on its folder) at a random moment of an initial sync, of delta
// cycles (transfer and apply) or of a failover drill, on loopback only, then check that the job
// completes by itself, that no acknowledged write is missing from any point cut after it was
// acknowledged, and that every point and drill disk is exactly the source at its instant.
//
//   npm run chaos -- [--trials 20] [--max-minutes 60] [--seed 1] [--victims process-server,azurite]
//                    [--phases initial-sync,delta,drill,reprotect] (reprotect, and the master-target
//                    victim, take a failover round trip per trial: about a minute each)
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { failoverBlobClient } from '../../activities/cloud-applier/recovered-disks';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { stopStorageDaemon } from '../../lib/qemu/storage-daemon';
import { checkRecords, RecordWorkload, type RecordLayout } from '../../stack/demo/record-workload';
import { ControlContext } from '../../operations/context';
import * as failback from '../../operations/failback';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import type { WorkerRole } from '../../stack/stack';
import type { RecoveryStatus } from '../../shared/contracts/recovery-job';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import {
  cleanUp,
  eventually,
  PHASES,
  printTable,
  sleep,
  snapshotRange,
  VICTIMS,
  type Phase,
  type Trial,
  type Victim,
} from './trials';

const MiB = 1024 * 1024;
/** Each delta trial writes into its own region of the steady machine's disk. */
const REGION_BYTES = 2 * MiB;
const STEADY_DISK = 160 * MiB;
const { values: args } = parseArgs({
  options: {
    trials: { type: 'string', default: '20' },
    'max-minutes': { type: 'string', default: '60' },
    seed: { type: 'string', default: String(Date.now() % 100000) },
    victims: { type: 'string', default: VICTIMS.filter((v) => v !== 'master-target').join(',') },
    phases: { type: 'string', default: PHASES.filter((p) => p !== 'reprotect').join(',') },
  },
});

let seed = Number(args.seed) | 1;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
class Chaos {
  private regions = 0;
  private steady!: TestMachine;

  constructor(
    private readonly stack: TestStack,
    private readonly ctx: ControlContext,
  ) {}

  async setUp(): Promise<void> {
    await createPolicy(this.ctx, {
      name: 'chaos',
      crashPointSeconds: 2,
      appPointSeconds: 0,
      rpoThresholdSeconds: 120,
    });
    this.steady = await startTestMachine({ sizes: [STEADY_DISK] });
    await machines.protect(this.ctx, {
      name: 'steady',
      qmpSocket: this.steady.daemon.qmpSocket,
      nbdSocket: this.steady.daemon.nbdSocket,
      policy: 'chaos',
    });
    await eventually('steady protected', async () =>
      (await machines.machineStatus(this.ctx, 'steady')).state === 'protected' ? true : undefined,
    );
  }

  async tearDown(): Promise<void> {
    await this.steady?.stop();
  }

  async crash(victim: Victim): Promise<number> {
    const at = Date.now();
    if (victim === 'temporal' || victim === 'azurite') {
      await this.stack.crashServer(victim);
      await this.stack.restartServer(victim);
    } else {
      await this.stack.killWorker(victim as WorkerRole);
      await this.stack.startWorker(victim as WorkerRole);
    }
    return at;
  }

  async trial(victim: Victim, phase: Phase): Promise<Trial> {
    const base: Trial = {
      victim,
      phase,
      ok: false,
      lostWrites: 0,
      corruptPoints: 0,
      pointsChecked: 0,
      recoveryMs: 0,
    };
    try {
      if (phase === 'initial-sync') return { ...base, ...(await this.initialSync(victim)) };
      if (phase === 'delta') return { ...base, ...(await this.delta(victim)) };
      if (phase === 'reprotect') return { ...base, ...(await this.reprotect(victim)) };
      return { ...base, ...(await this.drill(victim)) };
    } catch (err) {
      return { ...base, note: (err as Error).message.slice(0, 300) };
    }
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
      await sleep(random() * 3000);
      const crashedAt = await this.crash(victim);
      const status = await eventually(`${name} protected`, async () => {
        const s = await machines.machineStatus(this.ctx, name);
        return s.state === 'protected' && s.lastPoint ? s : undefined;
      });
      const recoveryMs = Date.now() - crashedAt;
      const point = (await this.ctx.vault.points(name)).find((p) => p.id === status.lastPoint?.id);
      if (!point) {
        await eventually('unprotect', () => machines.unprotect(this.ctx, name));
        return {
          ok: victim === 'azurite',
          forgotten: 1,
          recoveryMs,
          note: 'first point forgotten by storage',
        };
      }
      const image = await snapshotRange(this.ctx, point, 0, source.length);
      const corrupt = image.equals(source) ? 0 : 1;
      await eventually('unprotect', () => machines.unprotect(this.ctx, name));
      return { ok: corrupt === 0, corruptPoints: corrupt, pointsChecked: 1, recoveryMs };
    } finally {
      await vm.stop();
    }
  }

  /** Delta cycles under a writer, crashed at a random moment; every point since must hold every
   * record acknowledged before its instant, and no record beyond a gap (write order). */
  private async delta(victim: Victim): Promise<Partial<Trial>> {
    const region = this.regions++;
    if ((region + 1) * REGION_BYTES > STEADY_DISK) throw new Error('steady disk full: fewer delta trials');
    const layout: RecordLayout = { baseOffset: region * REGION_BYTES, slots: REGION_BYTES / 4096 };
    const workload = new RecordWorkload(await this.steady.disk(), layout, `r${region}`);
    const timeline: Array<{ at: number; ack: number }> = [];
    let writing = true;
    const writer = (async () => {
      while (writing && workload.acknowledged < layout.slots - 1) {
        const ack = await workload.writeNext();
        timeline.push({ at: Date.now(), ack });
        await sleep(5);
      }
    })();
    const start = Date.now();
    await sleep(500 + random() * 3000);
    const crashedAt = await this.crash(victim);
    // Replication is back when a point is cut after the restart.
    const restartedAt = Date.now();
    await eventually('a point after the restart', async () => {
      const points = await this.ctx.vault.points('steady');
      return points.some((p) => Date.parse(p.instant) > restartedAt) ? true : undefined;
    });
    const recoveryMs = Date.now() - crashedAt;
    writing = false;
    await writer;
    const finalAck = workload.acknowledged;
    // The point after the writer stopped must hold every record.
    const stoppedAt = Date.now();
    await eventually('a point after the writer stopped', async () => {
      const points = await this.ctx.vault.points('steady');
      return points.some((p) => Date.parse(p.instant) > stoppedAt) ? true : undefined;
    });
    const points = (await this.ctx.vault.points('steady')).filter((p) => Date.parse(p.instant) >= start);
    let lost = 0;
    let corrupt = 0;
    for (const point of points) {
      const instant = Date.parse(point.instant);
      const required = timeline.filter((t) => t.at < instant).at(-1)?.ack ?? 0;
      const data = await snapshotRange(this.ctx, point, layout.baseOffset, REGION_BYTES);
      const check = await checkRecords(
        async (o, l) => data.subarray(o - layout.baseOffset, o - layout.baseOffset + l),
        layout,
        Math.min(layout.slots - 1, finalAck + 8),
      );
      if (check.outOfOrder.length) corrupt += 1;
      if (check.prefix < required) lost += required - check.prefix;
    }
    const last = points.at(-1);
    if (!last || Date.parse(last.instant) <= stoppedAt) corrupt += 1;
    return {
      ok: lost === 0 && corrupt === 0,
      lostWrites: lost,
      corruptPoints: corrupt,
      pointsChecked: points.length,
      recoveryMs,
    };
  }

  /**
   * A machine failed over (planned, committed, materialized), written in the recovery site, then
   * reprotected with a crash at a random moment of the diff resync; failback must bring up on the
   * original disk exactly the recovery-site disk.
   */
  private async reprotect(victim: Victim): Promise<Partial<Trial>> {
    const name = `rp-${randomBytes(3).toString('hex')}`;
    const vm = await startTestMachine({ sizes: [16 * MiB] });
    let recovery: NbdClient | undefined;
    let recoveredDir: string | undefined;
    try {
      const primary = await vm.disk();
      await primary.write(0, pseudoRandom(4 * MiB, 11));
      await primary.flush();
      const marker = `${vm.dir}/writers-stopped`;
      await machines.protect(this.ctx, {
        name,
        qmpSocket: vm.daemon.qmpSocket,
        nbdSocket: vm.daemon.nbdSocket,
        policy: 'chaos',
        quiesce: { pre: `touch ${marker}`, post: `rm -f ${marker}` },
      });
      await failover.configureRecovery(this.ctx, name, { materialize: { format: 'qcow2' } });
      await eventually(`${name} protected`, async () =>
        (await machines.machineStatus(this.ctx, name)).state === 'protected' ? true : undefined,
      );
      const { status } = await failover.startFailover(this.ctx, name, { planned: true });
      if (status?.state !== 'failed-over' || !status.materialized)
        throw new Error(`failover of ${name} ended ${status?.state}: ${status?.error ?? 'not materialized'}`);
      await failover.commitFailover(this.ctx, name);
      recoveredDir = status.materialized.dir;
      recovery = await NbdClient.connect({ socket: status.materialized.nbdSocket, exportName: 'disk0' });
      await recovery.write(8 * MiB, pseudoRandom(MiB, 13)); // written in the recovery site
      await recovery.write(MiB, pseudoRandom(256 * 1024, 17));
      await recovery.flush();
      await failback.startReprotect(this.ctx, name, { intervalSeconds: 2, wait: false });
      await sleep(random() * 3000);
      const crashedAt = await this.crash(victim);
      await eventually(`${name} reprotected`, async () =>
        (await failback.reprotectStatus(this.ctx, name)).state === 'protected' ? true : undefined,
      );
      const recoveryMs = Date.now() - crashedAt;
      await recovery.write(12 * MiB, pseudoRandom(MiB, 19)); // more, for the final cycle
      await recovery.flush();
      const atFailback = await recovery.read(0, 16 * MiB);
      await recovery.close();
      recovery = undefined;
      const fb = await eventually('failback', () => failback.startFailback(this.ctx, name));
      if (fb.status?.state !== 'done') throw new Error(`failback ended ${fb.status?.state}`);
      const corrupt = (await vm.readAll()).equals(atFailback) ? 0 : 1;
      return { ok: corrupt === 0, corruptPoints: corrupt, pointsChecked: 1, recoveryMs };
    } finally {
      await recovery?.close().catch(() => undefined);
      if (recoveredDir) await stopStorageDaemon(recoveredDir).catch(() => undefined);
      await vm.stop();
    }
  }

  /** A drill of the steady machine crashed at a random moment; its disk must equal the point. */
  private async drill(victim: Victim): Promise<Partial<Trial>> {
    const { ref } = await eventually('drill started', () =>
      // A trial whose cleanup storage forgot may leave a drill on record: each trial drills anew.
      failover.startTestFailover(this.ctx, 'steady', { wait: false, another: true }),
    );
    await sleep(random() * 2500);
    const crashedAt = await this.crash(victim);
    const status = await eventually('drill ready', async () => {
      const handle = (await this.ctx.client()).workflow.getHandle(ref.workflowId);
      const s = (await handle.query('status')) as RecoveryStatus;
      if (s.state === 'failed') throw new Error(`drill failed: ${s.error}`);
      return s.state === 'ready' ? s : undefined;
    });
    const recoveryMs = Date.now() - crashedAt;
    const point = (await this.ctx.vault.points('steady')).find((p) => p.id === status.point?.id);
    if (!point) {
      await cleanUp(this.ctx, ref.job, victim);
      return {
        ok: victim === 'azurite',
        forgotten: 1,
        recoveryMs,
        note: `point ${status.point?.id} forgotten by storage`,
      };
    }
    const used = Math.max(1, this.regions) * REGION_BYTES;
    const expected = await snapshotRange(this.ctx, point, 0, used);
    const disk = status.disks.find((d) => d.diskId === 'disk0');
    let actual: Buffer;
    try {
      actual = disk
        ? await failoverBlobClient(this.ctx.blobService, disk.blob).downloadToBuffer(0, used)
        : Buffer.alloc(0);
    } catch (err) {
      // The drill's disk copy, made in Azurite's last unsaved seconds, forgotten by its restart.
      if (victim !== 'azurite' || (err as { statusCode?: number }).statusCode !== 404) throw err;
      await cleanUp(this.ctx, ref.job, victim);
      return { ok: true, forgotten: 1, recoveryMs, note: `disk of drill ${ref.job} forgotten by storage` };
    }
    const corrupt = actual.equals(expected) ? 0 : 1;
    // Azurite may have forgotten the drill's record (written in its last unsaved seconds).
    const forgotten = await cleanUp(this.ctx, ref.job, victim);
    return { ok: corrupt === 0, corruptPoints: corrupt, pointsChecked: 1, recoveryMs, forgotten };
  }
}

async function main(): Promise<void> {
  const trialsPerVictim = Number(args.trials);
  const deadline = Date.now() + Number(args['max-minutes']) * 60_000;
  const victims = (args.victims as string).split(',') as Victim[];
  for (const v of victims)
    if (!VICTIMS.includes(v)) throw new Error(`unknown victim ${v}: use ${VICTIMS.join(', ')}`);
  const phases = (args.phases as string).split(',') as Phase[];
  for (const p of phases)
    if (!PHASES.includes(p)) throw new Error(`unknown phase ${p}: use ${PHASES.join(', ')}`);
  console.log(
    `chaos: ${trialsPerVictim} trials per victim (${victims.join(', ')}), phases ${phases.join(', ')}, seed ${args.seed}`,
  );
  const stack = await startTestStack({ persistent: true });
  const ctx = new ControlContext(stack.config);
  const chaos = new Chaos(stack, ctx);
  const trials: Trial[] = [];
  try {
    await Promise.all([
      stack.startWorker('control'),
      stack.startWorker('cloud-applier'),
      stack.startWorker('process-server'),
      stack.startWorker('master-target'),
    ]);
    await chaos.setUp();
    outer: for (let i = 0; i < trialsPerVictim; i++) {
      for (const victim of victims) {
        if (Date.now() > deadline) {
          console.log(`chaos: time budget spent after ${trials.length} trials`);
          break outer;
        }
        const phase = phases[(i + victims.indexOf(victim)) % phases.length] as Phase;
        const t = await chaos.trial(victim, phase);
        trials.push(t);
        console.log(
          `${String(trials.length).padStart(3)} ${victim.padEnd(14)} ${phase.padEnd(12)} ${t.ok ? 'ok  ' : 'FAIL'} recovery ${(t.recoveryMs / 1000).toFixed(1)} s, ${t.pointsChecked} points checked${t.note ? `: ${t.note}` : ''}`,
        );
      }
    }
  } finally {
    await chaos.tearDown().catch(() => undefined);
    await ctx.close().catch(() => undefined);
    await stack.stop();
  }
  console.log('');
  printTable(trials);
  const failed = trials.filter((t) => !t.ok).length;
  console.log(`\nchaos: ${trials.length} trials, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
