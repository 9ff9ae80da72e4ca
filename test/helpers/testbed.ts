// The setup replication tests share: a private stack with the control, cloud-applier and
// process-server workers, a control-plane context, and a "manual" policy under which points are
// cut only on request (each test decides when).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createPolicy } from '../../operations/policies';
import { startFaultProxy, type FaultProxy } from './fault-proxy';
import { waitForStatus } from './protection';
import { pseudoRandom, startTestMachine, type TestMachine } from './qemu-machine';
import { startTestStack, type TestStack } from './test-stack';

const MiB = 1024 * 1024;

export interface Testbed {
  stack: TestStack;
  ctx: ControlContext;
  stop(): Promise<void>;
}

export async function startTestbed(
  options: {
    processServerEnv?: (stack: TestStack) => Promise<NodeJS.ProcessEnv> | NodeJS.ProcessEnv;
    /** Environment of the test's own configuration and of every worker. */
    extraEnv?: NodeJS.ProcessEnv;
  } = {},
): Promise<Testbed> {
  const stack = await startTestStack({ extraEnv: options.extraEnv });
  const ctx = new ControlContext(stack.config);
  try {
    const psEnv = (await options.processServerEnv?.(stack)) ?? {};
    await Promise.all([
      stack.startWorker('control'),
      stack.startWorker('cloud-applier'),
      stack.startWorker('process-server', psEnv),
    ]);
    await createManualPolicy(ctx);
  } catch (err) {
    // Nobody else holds the stack yet: left running, its servers would keep the test file alive.
    await ctx.close().catch(() => undefined);
    await stack.stop();
    throw err;
  }
  return {
    stack,
    ctx,
    async stop() {
      await ctx.close();
      await stack.stop();
    },
  };
}

/**
 * A testbed whose process server reaches storage through a fault proxy, which counts, corrupts or
 * holds its requests on the test's rules; stop() closes both.
 */
export type ProxiedTestbed = Testbed & { proxy: FaultProxy };

export async function startProxiedTestbed(): Promise<ProxiedTestbed> {
  let proxy: FaultProxy | undefined;
  try {
    const bed = await startTestbed({
      processServerEnv: async (stack) => {
        proxy = await startFaultProxy(stack.config.storage.azuritePort);
        return { OSR_AZURITE_PORT: String(proxy.port) };
      },
    });
    const started = proxy as FaultProxy;
    return {
      ...bed,
      proxy: started,
      async stop() {
        await bed.stop();
        await started.close();
      },
    };
  } catch (err) {
    await proxy?.close();
    throw err;
  }
}

/** The "manual" policy: points are cut only on request. */
export async function createManualPolicy(ctx: ControlContext): Promise<void> {
  await createPolicy(ctx, {
    name: 'manual',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
}

/** Protects a test machine's disks under the "manual" policy and waits for its first point. */
export async function protectManual(ctx: ControlContext, name: string, vm: TestMachine): Promise<void> {
  await machines.protect(ctx, {
    name,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(ctx, name, (s) => s.state === 'protected');
}

export interface MachineTestbed extends Testbed {
  vm: TestMachine;
  /** A private scratch folder, removed at stop. */
  scratch: string;
}

/**
 * A testbed with one machine: a disk of diskMiB whose first dataMiB hold pseudo-random data
 * (seed), protected as name under "manual", and a scratch folder.
 */
export async function startMachineTestbed(options: {
  name: string;
  diskMiB: number;
  dataMiB: number;
  seed: number;
  scratchPrefix: string;
}): Promise<MachineTestbed> {
  const bed = await startTestbed();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), options.scratchPrefix));
  let vm: TestMachine | undefined;
  const stop = async () => {
    await vm?.stop();
    await bed.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  };
  try {
    vm = await startTestMachine({ sizes: [options.diskMiB * MiB] });
    const disk = await vm.disk();
    await disk.write(0, pseudoRandom(options.dataMiB * MiB, options.seed));
    await disk.flush();
    await protectManual(bed.ctx, options.name, vm);
  } catch (err) {
    await stop();
    throw err;
  }
  return { ...bed, vm, scratch, stop };
}

/**
 * Starts a machine testbed before the file's tests and stops it after them; ready receives it
 * (for the file's own shorthands: stack, ctx, vm, scratch).
 */
export function useMachineTestbed(
  options: Parameters<typeof startMachineTestbed>[0],
  ready: (bed: MachineTestbed) => void,
): void {
  let bed: MachineTestbed | undefined;
  before(async () => {
    bed = await startMachineTestbed(options);
    ready(bed);
  });
  after(async () => {
    await bed?.stop();
  });
}

/** bi1 of the bad-input tests: protected, with a point, for the tests of unknown points and of conflicts. */
export const BAD_INPUT_MACHINE = { name: 'bi1', diskMiB: 8, dataMiB: 1, seed: 3, scratchPrefix: 'osr-bad-' };
