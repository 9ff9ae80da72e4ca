// Protecting machines: start, query and steer each machine's protectMachine workflow, and keep
// its registration in the vault.
import fs from 'node:fs';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import type { ProtectedMachine, QuiesceHooks, RecoveryPoint } from '../replication-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_STATE } from '../search-attributes';
import { CONTROL_TASK_QUEUE } from '../task-queues';
import { Vault } from '../vault';
import {
  changePolicyUpdate,
  disableUpdate,
  pauseUpdate,
  protectWorkflowId,
  resumeUpdate,
  resyncUpdate,
  statusQuery,
  takePointUpdate,
  type MachineStatus,
  type PointRequest,
} from '../../workflows/protect-machine-api';
import type { protectMachine } from '../../workflows/protect-machine';
import { OperationError, type ControlContext } from './context';
import { getPolicy } from './policies';

const MACHINE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface ProtectOptions {
  name: string;
  qmpSocket: string;
  nbdSocket?: string;
  disks?: string[];
  policy?: string;
  quiesce?: QuiesceHooks;
  /** Cycles per workflow run before continueAsNew; only tests change the default. */
  maxCyclesPerRun?: number;
}

export async function protect(
  ctx: ControlContext,
  options: ProtectOptions,
): Promise<{ machine: ProtectedMachine; workflowId: string }> {
  if (!MACHINE_NAME.test(options.name)) {
    throw new OperationError(
      `machine name "${options.name}" is not valid: use lower-case letters, digits and dashes (at most 63)`,
      'invalid',
    );
  }
  if (!fs.existsSync(options.qmpSocket)) {
    throw new OperationError(
      `no QMP socket at ${options.qmpSocket}: start the VM or qemu-storage-daemon with a QMP monitor (--chardev socket,path=…,server=on,wait=off --monitor chardev=…) and pass its path with --qmp`,
      'invalid',
    );
  }
  const policy = await getPolicy(ctx, options.policy ?? 'default');
  const machine: ProtectedMachine = {
    name: options.name,
    site: ctx.config.site,
    source: {
      type: 'qemu',
      qmpSocket: options.qmpSocket,
      nbdSocket: options.nbdSocket,
      disks: options.disks,
    },
    policy: policy.name,
    quiesce: options.quiesce,
    createdAt: new Date().toISOString(),
  };
  const client = await ctx.client();
  const workflowId = protectWorkflowId(machine.name);
  try {
    await client.workflow.start<typeof protectMachine>('protectMachine', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [{ machine, policy, maxCyclesPerRun: options.maxCyclesPerRun }],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
      typedSearchAttributes: [
        { key: OSR_MACHINE, value: machine.name },
        { key: OSR_STATE, value: 'enabling' },
        { key: OSR_JOB_KIND, value: 'protect' },
      ],
      memo: {
        summary: `Protects ${machine.name} (QMP ${machine.source.qmpSocket}) with policy ${policy.name}`,
      },
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new OperationError(
        `machine ${machine.name} is already protected (workflow ${workflowId} is running). See \`osr status ${machine.name}\`; to start over, \`osr unprotect ${machine.name}\` first.`,
        'conflict',
      );
    }
    throw err;
  }
  await ctx.vault.write(Vault.machineDoc(machine.name), machine, '*');
  return { machine, workflowId };
}

async function handleOf(ctx: ControlContext, name: string): Promise<WorkflowHandle<typeof protectMachine>> {
  const client = await ctx.client();
  return client.workflow.getHandle<typeof protectMachine>(protectWorkflowId(name));
}

export interface MachineOverview {
  machine: string;
  registered: boolean;
  status?: MachineStatus;
  /** Why there is no live status (workflow not running). */
  note?: string;
}

export async function machineStatus(ctx: ControlContext, name: string): Promise<MachineStatus> {
  const handle = await handleOf(ctx, name);
  try {
    const description = await handle.describe();
    if (description.status.name !== 'RUNNING') {
      throw new OperationError(
        `machine ${name} is not protected (its workflow ${handle.workflowId} is ${description.status.name.toLowerCase()})`,
        'not-found',
      );
    }
    const status = await handle.query(statusQuery);
    // A query sees the workflow's clock as of its last activation: compute RPO on the wall clock.
    if (status.lastPoint)
      status.rpoSeconds = Math.max(0, Math.round((Date.now() - Date.parse(status.lastPoint.instant)) / 1000));
    return status;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      const known = (await ctx.vault.machines()).map((m) => m.name);
      throw new OperationError(
        `no protected machine named ${name}${known.length ? `; known: ${known.join(', ')}` : ''}. Protect it with \`osr protect ${name} --qmp <socket>\``,
        'not-found',
      );
    }
    throw err;
  }
}

export async function listMachines(ctx: ControlContext): Promise<MachineOverview[]> {
  const machines = await ctx.vault.machines();
  return Promise.all(
    machines.map(async (m) => {
      try {
        return { machine: m.name, registered: true, status: await machineStatus(ctx, m.name) };
      } catch (err) {
        return { machine: m.name, registered: true, note: (err as Error).message };
      }
    }),
  );
}

async function runUpdate<T>(
  ctx: ControlContext,
  name: string,
  call: (h: WorkflowHandle<typeof protectMachine>) => Promise<T>,
): Promise<T> {
  await machineStatus(ctx, name); // a clear not-found before anything else
  const handle = await handleOf(ctx, name);
  try {
    return await call(handle);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError || (err as Error).name === 'WorkflowUpdateFailedError') {
      const cause = (err as { cause?: Error }).cause;
      throw new OperationError(cause?.message ?? (err as Error).message, 'conflict');
    }
    throw err;
  }
}

export const pause = (ctx: ControlContext, name: string, reason?: string) =>
  runUpdate(ctx, name, (h) => h.executeUpdate(pauseUpdate, { args: [{ reason }] }));
export const resume = (ctx: ControlContext, name: string) =>
  runUpdate(ctx, name, (h) => h.executeUpdate(resumeUpdate));
export const resync = (ctx: ControlContext, name: string) =>
  runUpdate(ctx, name, (h) => h.executeUpdate(resyncUpdate));
export const takePoint = (ctx: ControlContext, name: string, request: PointRequest) =>
  runUpdate(ctx, name, (h) => h.executeUpdate(takePointUpdate, { args: [request] }));

export async function changePolicy(
  ctx: ControlContext,
  name: string,
  policyName: string,
): Promise<MachineStatus> {
  const policy = await getPolicy(ctx, policyName);
  const status = await runUpdate(ctx, name, (h) => h.executeUpdate(changePolicyUpdate, { args: [policy] }));
  await ctx.vault.update<ProtectedMachine>(Vault.machineDoc(name), (m) => {
    if (!m) throw new OperationError(`machine ${name} is not in the vault`, 'not-found');
    return { ...m, policy: policy.name };
  });
  return status;
}

export async function unprotect(
  ctx: ControlContext,
  name: string,
  options: { keepReplica?: boolean } = {},
): Promise<MachineStatus> {
  const status = await runUpdate(ctx, name, (h) => h.executeUpdate(disableUpdate, { args: [options] }));
  await ctx.vault.remove(Vault.machineDoc(name));
  if (!options.keepReplica) {
    for (const p of await ctx.vault.points(name)) await ctx.vault.remove(Vault.pointDoc(name, p.id));
  }
  return status;
}

/** Resolves `latest`, `latest-app`, a point id, or "at or before" an ISO time. */
export async function resolvePoint(
  ctx: ControlContext,
  machine: string,
  selector: string,
): Promise<RecoveryPoint> {
  const points = await ctx.vault.points(machine);
  if (points.length === 0)
    throw new OperationError(
      `machine ${machine} has no recovery point yet (initial sync still running?)`,
      'not-found',
    );
  let found: RecoveryPoint | undefined;
  if (selector === 'latest') found = points[points.length - 1];
  else if (selector === 'latest-app') found = [...points].reverse().find((p) => p.kind === 'app');
  else if (/^\d{4}-\d{2}-\d{2}T/.test(selector) && !Number.isNaN(Date.parse(selector))) {
    const at = Date.parse(selector);
    found = [...points].reverse().find((p) => Date.parse(p.instant) <= at);
  } else found = points.find((p) => p.id === selector);
  if (!found) {
    throw new OperationError(
      `machine ${machine} has no recovery point "${selector}"; use latest, latest-app, an ISO time, or one of: ${points
        .slice(-5)
        .map((p) => p.id)
        .join(', ')}${points.length > 5 ? ' … (osr points ' + machine + ')' : ''}`,
      'not-found',
    );
  }
  return found;
}
