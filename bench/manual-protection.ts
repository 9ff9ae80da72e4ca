// What benches protect under: a policy that cuts points only when the bench asks (one an hour
// otherwise) with an RPO alert far past any run, so timing is the bench's; and one test machine's
// disks protected under it, waited for until its first point.
import type { ControlContext } from '../operations/context';
import * as machines from '../operations/machines';
import { createPolicy } from '../operations/policies';
import type { TestMachine } from '../test/helpers/qemu-machine';
import { secondsSince, sleep } from './harness';

type PolicySpec = Parameters<typeof createPolicy>[1];

/** A policy named `name` with points on request only; `extra` adds to it (a bandwidth limit). */
export function createManualPolicy(
  ctx: ControlContext,
  name: string,
  extra: Partial<PolicySpec> = {},
): ReturnType<typeof createPolicy> {
  return createPolicy(ctx, {
    name,
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
    ...extra,
  });
}

/** Protects `vm` as `name` under `policy`, in one workflow run, and waits for its first point. */
export async function protectUntilFirstPoint(
  ctx: ControlContext,
  name: string,
  vm: TestMachine,
  policy: string,
): Promise<void> {
  await machines.protect(ctx, {
    name,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy,
    // One run for the whole measurement: a cycle breakdown reads one history chain either way.
    maxCyclesPerRun: 1000,
  });
  for (let t = performance.now(); ; await sleep(500)) {
    const status = await machines.machineStatus(ctx, name).catch(() => undefined);
    if (status?.state === 'protected' && status.lastPoint) return;
    if (secondsSince(t) > 300) throw new Error(`${name}: the first point did not come within 300 s`);
  }
}
