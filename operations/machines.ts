// Protecting machines: start, query and steer each machine's protectMachine workflow, and keep
// its registration in the vault.
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client/lib/errors';
import {
  type MachinePlatform,
  type ProtectedMachine,
  type QuiesceHooks,
  type RecoveryPoint,
} from '../shared/replication-types';
import { Vault } from '../lib/azure/vault';
import { checkName } from '../shared/names';
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
} from '../shared/contracts/protect-machine';
import { audited } from './audit';
import { platformOf } from './machine-platform';
import { checkPointTag } from './points';
import { OperationError, type ControlContext } from './context';
import { workflowState } from './failover-lock';
import { getPolicy } from './policies';
import { keepDomain, sourceOf, sourceSummary, type ProtectSource } from './protect-source';
import { keptDomainDoc } from '../shared/libvirt-target';
import { checkSourceOnItsHost, startProtection, type ProtectMachineWorkflow } from './protection-start';
import {
  endedHealth,
  endedProtection,
  finishStatus,
  unprotectEnded,
  type EndedProtection,
  type StatusReads,
} from './health';
import type { MachineHealth } from '../shared/machine-health';

export type ProtectOptions = ProtectSource & {
  name: string;
  disks?: string[];
  policy?: string;
  quiesce?: QuiesceHooks;
  /** OS type and Hyper-V generation an Azure VM of it needs (default Linux, V1: QEMU boots by BIOS). */
  platform?: Partial<MachinePlatform>;
  /** Cycles per workflow run before continueAsNew; only tests change the default. */
  maxCyclesPerRun?: number;
};

export const protect = audited(
  'machine.protect',
  (ctx: ControlContext, options: ProtectOptions) => protectNew(ctx, options),
  (_ctx, o) => ({
    target: o.name,
    details: {
      ...('agentId' in o
        ? { agent: o.agentId }
        : 'domain' in o
          ? { host: o.host, domain: o.domain }
          : { qmp: o.qmpSocket, host: o.host }),
      disks: o.disks,
      policy: o.policy,
    },
  }),
);

/**
 * Protection again for a machine the vault knows, from its record alone (source, policy, quiesce):
 * after the control plane and its Temporal were lost, or after an unprotect that kept the replica.
 */
export const protectFromVault = audited(
  'machine.protect',
  async (ctx: ControlContext, name: string): Promise<{ machine: ProtectedMachine; workflowId: string }> => {
    checkName('machine', name);
    const machine = await ctx.vault.machine(name);
    if (!machine)
      throw await noSuchMachine(
        ctx,
        name,
        `; to protect a new machine, give its source: \`osr protect ${name} --qmp <socket>\``,
      );
    await refuseIfRunning(ctx, name);
    const policy = await getPolicy(ctx, machine.policy);
    const summary = `Protects ${name} again from its vault record (${sourceSummary(machine.source)}) with policy ${policy.name}`;
    await startOnce(ctx, { machine, policy, summary });
    return { machine, workflowId: protectWorkflowId(name) };
  },
  (_ctx, name) => ({ target: name, details: { from: 'vault' } }),
);

async function noSuchMachine(ctx: ControlContext, name: string, fix = ''): Promise<OperationError> {
  const known = (await ctx.vault.machines()).map((m) => m.name);
  return new OperationError(
    `no protected machine named ${name}${known.length ? `; known: ${known.join(', ')}` : ''}${fix}`,
    'not-found',
  );
}

async function protectNew(
  ctx: ControlContext,
  options: ProtectOptions,
): Promise<{ machine: ProtectedMachine; workflowId: string }> {
  checkName('machine', options.name);
  if (options.policy !== undefined) checkName('policy', options.policy);
  // Said before the source is looked at: the source may be fine, the name is taken.
  if (await ctx.vault.machine(options.name)) await refuseIfRunning(ctx, options.name);
  const { site, host, source } = await sourceOf(ctx, options);
  // The Azure readiness check runs for every target: the target can be set to azure later.
  const { azureReadiness, domainXml } = await checkSourceOnItsHost(ctx, {
    name: options.name,
    site,
    host,
    source,
    guestAgentSocket: options.quiesce?.guestAgentSocket,
  });
  const policy = await getPolicy(ctx, options.policy ?? 'default');
  const machine: ProtectedMachine = {
    name: options.name,
    site,
    ...(host ? { host } : {}),
    source,
    policy: policy.name,
    quiesce: options.quiesce,
    platform: platformOf(options.platform),
    ...(azureReadiness ? { azureReadiness } : {}),
    createdAt: new Date().toISOString(),
  };
  const workflowId = protectWorkflowId(machine.name);
  const summary = `Protects ${machine.name} (${sourceSummary(machine.source)}) with policy ${policy.name}`;
  await startOnce(ctx, { machine, policy, maxCyclesPerRun: options.maxCyclesPerRun, summary });
  await ctx.vault.write(Vault.machineDoc(machine.name), machine, '*');
  if (source.type === 'libvirt' && domainXml) await keepDomain(ctx, machine.name, source, domainXml);
  return { machine, workflowId };
}

function alreadyProtected(name: string): OperationError {
  return new OperationError(
    `machine ${name} is already protected (workflow ${protectWorkflowId(name)} is running). See \`osr status ${name}\`; to start over, \`osr unprotect ${name}\` first.`,
    'conflict',
  );
}

/** Starts a machine's protection workflow; refused as a conflict when one already runs. */
async function startOnce(
  ctx: ControlContext,
  input: Omit<Parameters<typeof startProtection>[1], 'ifRunning'>,
) {
  try {
    await startProtection(await ctx.client(), { ...input, ifRunning: 'fail' });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw alreadyProtected(input.machine.name);
    throw err;
  }
}

async function refuseIfRunning(ctx: ControlContext, name: string): Promise<void> {
  if ((await workflowState(ctx, protectWorkflowId(name))) === 'running') throw alreadyProtected(name);
}

/**
 * Waits (up to `timeoutMs`) for a just-protected machine to leave `enabling`: its disks found and
 * tracking on. Resolves with the state then (still `enabling` at the time-out: no process server
 * took the work); a failed enable is refused with the process server's reason, so `osr protect`
 * says what is wrong instead of only that it started.
 */
export async function enableOutcome(ctx: ControlContext, name: string, timeoutMs = 30_000): Promise<string> {
  const handle = await handleOf(ctx, name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const description = await handle.describe();
    if (description.status.name === 'FAILED')
      throw new OperationError(
        `protecting ${name} failed${(await failureOf(handle)).replace(/\.$/, '')}. Nothing is replicated; fix it and run \`osr protect ${name}\` again`,
        'invalid',
      );
    if (description.status.name !== 'RUNNING') return description.status.name.toLowerCase();
    const state = await handle.query(statusQuery).then(
      (s) => s.state,
      () => 'enabling', // no workflow task has run yet
    );
    if (state !== 'enabling' || Date.now() > deadline) return state;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Why a closed workflow failed: the innermost cause's message (e.g. the activity's SourceError). */
async function failureOf(handle: WorkflowHandle): Promise<string> {
  try {
    await handle.result();
    return '';
  } catch (err) {
    let cause = err as Error & { cause?: unknown };
    while (cause.cause instanceof Error) cause = cause.cause as Error & { cause?: unknown };
    return `: ${cause.message}`;
  }
}

async function handleOf(ctx: ControlContext, name: string): Promise<WorkflowHandle<ProtectMachineWorkflow>> {
  checkName('machine', name);
  const client = await ctx.client();
  return client.workflow.getHandle<ProtectMachineWorkflow>(protectWorkflowId(name));
}

/**
 * A registered machine (its vault document), or a not-found refusal that lists the known ones.
 * Every operation and route that takes a machine name asks this first.
 */
export async function registeredMachine(ctx: ControlContext, name: string): Promise<ProtectedMachine> {
  checkName('machine', name);
  const machine = await ctx.vault.machine(name);
  if (machine) return machine;
  throw await noSuchMachine(ctx, name);
}

/**
 * A machine's recovery points, oldest first. No points and no such machine is a typo, not an
 * empty list (an unprotected machine's points kept with --keep-replica are still listed).
 */
export async function listPoints(ctx: ControlContext, name: string): Promise<RecoveryPoint[]> {
  checkName('machine', name);
  const found = await ctx.vault.points(name);
  if (found.length === 0) await registeredMachine(ctx, name);
  return found;
}

export interface MachineOverview {
  machine: string;
  registered: boolean;
  status?: MachineStatus;
  /** Why there is no live status (workflow not running). */
  note?: string;
  /** Its protection was ended outside OSR (operations/health.ts): state, reason and fix. */
  ended?: EndedProtection;
  /** Without a live status, the health shown (critical when its protection ended outside OSR). */
  health?: MachineHealth;
}

export async function machineStatus(
  ctx: ControlContext,
  name: string,
  reads?: StatusReads,
): Promise<MachineStatus> {
  checkName('machine', name);
  const handle = await handleOf(ctx, name);
  try {
    const description = await handle.describe();
    if (description.status.name !== 'RUNNING') {
      const why = description.status.name === 'FAILED' ? await failureOf(handle) : '';
      throw new OperationError(
        `machine ${name} is not protected (its workflow ${handle.workflowId} is ${description.status.name.toLowerCase()}${why})`,
        'not-found',
      );
    }
    const status = await handle.query(statusQuery);
    // A query sees the workflow's clock as of its last activation: RPO and health on the wall
    // clock, with the group's failed cuts (operations/health.ts).
    return await finishStatus(ctx, status, reads);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      throw await noSuchMachine(ctx, name, `. Protect it with \`osr protect ${name} --qmp <socket>\``);
    }
    throw err;
  }
}

export async function listMachines(ctx: ControlContext): Promise<MachineOverview[]> {
  const machines = await ctx.vault.machines();
  const reads: StatusReads = { groups: new Map(), machines: new Map(machines.map((m) => [m.name, m])) };
  return Promise.all(
    machines.map(async (m) => {
      try {
        return { machine: m.name, registered: true, status: await machineStatus(ctx, m.name, reads) };
      } catch (err) {
        const ended = await endedProtection(ctx, m.name).catch(() => undefined);
        if (ended)
          return {
            machine: m.name,
            registered: true,
            note: `${ended.state}: ${ended.reason}. Fix: ${ended.fix}`,
            ended,
            health: endedHealth(ended),
          };
        return { machine: m.name, registered: true, note: (err as Error).message };
      }
    }),
  );
}

async function runUpdate<T>(
  ctx: ControlContext,
  name: string,
  call: (h: WorkflowHandle<ProtectMachineWorkflow>) => Promise<T>,
): Promise<T> {
  checkName('machine', name);
  await machineStatus(ctx, name); // a clear not-found before anything else
  const handle = await handleOf(ctx, name);
  try {
    return await call(handle);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError || (err as Error).name === 'WorkflowUpdateFailedError') {
      const cause = (err as { cause?: Error }).cause;
      throw new OperationError(cause?.message ?? (err as Error).message, 'conflict');
    }
    // The protection ended between the check above and the update (unprotected meanwhile).
    if (
      err instanceof WorkflowNotFoundError ||
      /workflow execution already completed/i.test((err as Error).message)
    )
      throw new OperationError(
        `machine ${name} is not protected any more (its protection ended while this was asked); see \`osr status\``,
        'not-found',
      );
    throw err;
  }
}

export const pause = audited(
  'machine.pause',
  (ctx: ControlContext, name: string, reason?: string) =>
    runUpdate(ctx, name, (h) => h.executeUpdate(pauseUpdate, { args: [{ reason }] })),
  (_ctx, name, reason?) => ({ target: name, details: { reason } }),
);
export const resume = audited(
  'machine.resume',
  (ctx: ControlContext, name: string) => runUpdate(ctx, name, (h) => h.executeUpdate(resumeUpdate)),
  (_ctx, name) => ({ target: name }),
);
export const resync = audited(
  'machine.resync',
  (ctx: ControlContext, name: string) => runUpdate(ctx, name, (h) => h.executeUpdate(resyncUpdate)),
  (_ctx, name) => ({ target: name }),
);
export const takePoint = audited(
  'machine.point',
  (ctx: ControlContext, name: string, request: PointRequest) => {
    checkPointTag(request.tag);
    return runUpdate(ctx, name, (h) => h.executeUpdate(takePointUpdate, { args: [request] }));
  },
  (_ctx, name, request) => ({ target: name, details: { kind: request.kind, tag: request.tag } }),
);

export const changePolicy = audited(
  'machine.set-policy',
  (ctx: ControlContext, name: string, policyName: string) => changeMachinePolicy(ctx, name, policyName),
  (_ctx, name, policy) => ({ target: name, details: { policy } }),
);

async function changeMachinePolicy(
  ctx: ControlContext,
  name: string,
  policyName: string,
): Promise<MachineStatus> {
  checkName('machine', name);
  checkName('policy', policyName);
  const policy = await getPolicy(ctx, policyName);
  const status = await runUpdate(ctx, name, (h) => h.executeUpdate(changePolicyUpdate, { args: [policy] }));
  await ctx.vault.update<ProtectedMachine>(Vault.machineDoc(name), (m) => {
    if (!m) throw new OperationError(`machine ${name} is not in the vault`, 'not-found');
    return { ...m, policy: policy.name };
  });
  return status;
}

export const unprotect = audited(
  'machine.unprotect',
  (ctx: ControlContext, name: string, options: { keepReplica?: boolean } = {}) =>
    unprotectMachine(ctx, name, options),
  (_ctx, name, options?) => ({ target: name, details: { keepReplica: options?.keepReplica } }),
);

async function unprotectMachine(
  ctx: ControlContext,
  name: string,
  options: { keepReplica?: boolean } = {},
): Promise<MachineStatus> {
  checkName('machine', name);
  // Protection ended outside OSR (its workflow cancelled or terminated): no workflow to disable,
  // the same cleanup runs in its own workflow, then the registration goes as usual.
  const ended = await endedProtection(ctx, name);
  const status = ended
    ? await unprotectEnded(ctx, name, ended, options.keepReplica ?? false)
    : await runUpdate(ctx, name, (h) => h.executeUpdate(disableUpdate, { args: [options] }));
  await ctx.vault.remove(Vault.machineDoc(name));
  if (!options.keepReplica) {
    await ctx.vault.remove(keptDomainDoc(name));
    for (const p of await ctx.vault.points(name)) await ctx.vault.remove(Vault.pointDoc(name, p.id));
  }
  return status;
}

export { resolvePoint } from './points';
