// The fault suite's reprotect trial: a machine failed over (planned, committed, materialized),
// written in the recovery site, then reprotected with a crash at a random moment of the diff
// resync; failback must bring up on the original disk exactly the recovery-site disk.
import { randomBytes } from 'node:crypto';
import { NbdClient } from '../../lib/qemu/nbd-client';
import { stopStorageDaemon } from '../../lib/qemu/storage-daemon';
import * as failback from '../../operations/failback';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { pseudoRandom, startTestMachine } from '../helpers/qemu-machine';
import type { Chaos } from './chaos';
import { eventually, sleep, type Trial, type Victim } from './trials';

const MiB = 1024 * 1024;

export async function reprotectTrial(chaos: Chaos, victim: Victim): Promise<Partial<Trial>> {
  const name = `rp-${randomBytes(3).toString('hex')}`;
  const vm = await startTestMachine({ sizes: [16 * MiB] });
  let recovery: NbdClient | undefined;
  let recoveredDir: string | undefined;
  try {
    const primary = await vm.disk();
    await primary.write(0, pseudoRandom(4 * MiB, 11));
    await primary.flush();
    const marker = `${vm.dir}/writers-stopped`;
    await machines.protect(chaos.ctx, {
      name,
      qmpSocket: vm.daemon.qmpSocket,
      nbdSocket: vm.daemon.nbdSocket,
      policy: 'chaos',
      quiesce: { pre: `touch ${marker}`, post: `rm -f ${marker}` },
    });
    await failover.configureRecovery(chaos.ctx, name, { materialize: { format: 'qcow2' } });
    await eventually(`${name} protected`, async () =>
      (await machines.machineStatus(chaos.ctx, name)).state === 'protected' ? true : undefined,
    );
    const { status } = await failover.startFailover(chaos.ctx, name, { planned: true });
    if (status?.state !== 'failed-over' || !status.materialized)
      throw new Error(`failover of ${name} ended ${status?.state}: ${status?.error ?? 'not materialized'}`);
    await failover.commitFailover(chaos.ctx, name);
    recoveredDir = status.materialized.dir;
    recovery = await NbdClient.connect({ socket: status.materialized.nbdSocket, exportName: 'disk0' });
    await recovery.write(8 * MiB, pseudoRandom(MiB, 13)); // written in the recovery site
    await recovery.write(MiB, pseudoRandom(256 * 1024, 17));
    await recovery.flush();
    await failback.startReprotect(chaos.ctx, name, { intervalSeconds: 2, wait: false });
    await sleep(chaos.random() * 3000);
    const crash = await chaos.crash(victim);
    await eventually(`${name} reprotected`, async () =>
      (await failback.reprotectStatus(chaos.ctx, name)).state === 'protected' ? true : undefined,
    );
    const recoveryMs = Date.now() - crash.at;
    await recovery.write(12 * MiB, pseudoRandom(MiB, 19)); // more, for the final cycle
    await recovery.flush();
    const atFailback = await recovery.read(0, 16 * MiB);
    await recovery.close();
    recovery = undefined;
    const fb = await eventually('failback', () => failback.startFailback(chaos.ctx, name));
    if (fb.status?.state !== 'done') throw new Error(`failback ended ${fb.status?.state}`);
    const corrupt = (await vm.readAll()).equals(atFailback) ? 0 : 1;
    return {
      ok: corrupt === 0,
      corruptPoints: corrupt,
      pointsChecked: 1,
      recoveryMs,
      landedOn: crash.landedOn,
    };
  } finally {
    await recovery?.close().catch(() => undefined);
    if (recoveredDir) await stopStorageDaemon(recoveredDir).catch(() => undefined);
    await vm.stop();
  }
}
