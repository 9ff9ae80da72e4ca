// Replication policies in the vault.
import { checkName } from '../shared/names';
import { DEFAULT_POLICY, validatePolicy } from '../shared/policy';
import type { ReplicationPolicy } from '../shared/replication-types';
import { Vault, VaultConflictError } from '../lib/azure/vault';
import { changePolicyUpdate, protectWorkflowId } from '../shared/contracts/protect-machine';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export const createPolicy = audited(
  'policy.create',
  (ctx: ControlContext, input: Partial<ReplicationPolicy> & { name: string }) => storePolicy(ctx, input),
  (_ctx, input) => ({ target: input.name, details: { ...input, name: undefined } }),
);

async function storePolicy(
  ctx: ControlContext,
  input: Partial<ReplicationPolicy> & { name: string },
): Promise<ReplicationPolicy> {
  checkName('policy', input.name);
  const policy = validatePolicy({ ...DEFAULT_POLICY, ...input });
  try {
    await ctx.vault.write(Vault.policyDoc(policy.name), policy);
  } catch (err) {
    if (err instanceof VaultConflictError) {
      throw new OperationError(`policy ${policy.name} already exists; choose another name`, 'conflict');
    }
    throw err;
  }
  return policy;
}

export async function listPolicies(ctx: ControlContext): Promise<ReplicationPolicy[]> {
  const stored = await ctx.vault.policies();
  return stored.some((p) => p.name === DEFAULT_POLICY.name) ? stored : [DEFAULT_POLICY, ...stored];
}

/** The named policy; `default` exists even before anyone stored it. */
export async function getPolicy(ctx: ControlContext, name: string): Promise<ReplicationPolicy> {
  checkName('policy', name);
  const policy = await ctx.vault.policy(name);
  if (policy) return policy;
  if (name === DEFAULT_POLICY.name) return DEFAULT_POLICY;
  const known = (await listPolicies(ctx)).map((p) => p.name).join(', ');
  throw new OperationError(
    `no policy named ${name}; known policies: ${known}. Create it with \`osr policy create ${name}\``,
    'not-found',
  );
}

export const updatePolicy = audited(
  'policy.update',
  (ctx: ControlContext, name: string, changes: Partial<Omit<ReplicationPolicy, 'name'>>) =>
    changeStoredPolicy(ctx, name, changes),
  (_ctx, name, changes) => ({ target: name, details: changes }),
);

/**
 * Changes a policy and hands the new one to every machine protected with it (each machine's
 * workflow holds its own copy). Returns the policy and the machines that took it, and those that
 * could not (not running: they take it when protected again).
 */
async function changeStoredPolicy(
  ctx: ControlContext,
  name: string,
  changes: Partial<Omit<ReplicationPolicy, 'name'>>,
): Promise<{ policy: ReplicationPolicy; machines: string[]; notUpdated: string[] }> {
  const current = await getPolicy(ctx, name);
  const policy = validatePolicy({ ...current, ...changes, name });
  await ctx.vault.update<ReplicationPolicy>(Vault.policyDoc(name), () => policy);
  const users = await machinesUsing(ctx, name);
  const notUpdated: string[] = [];
  const client = await ctx.client();
  for (const machine of users) {
    try {
      await client.workflow
        .getHandle(protectWorkflowId(machine))
        .executeUpdate(changePolicyUpdate, { args: [policy] });
    } catch (err) {
      // Not running (unprotected with the replica kept, or ended outside OSR): it takes the
      // stored policy when protected again.
      notUpdated.push(`${machine}: ${(err as { cause?: Error }).cause?.message ?? (err as Error).message}`);
    }
  }
  return { policy, machines: users, notUpdated };
}

export const deletePolicy = audited(
  'policy.delete',
  (ctx: ControlContext, name: string) => removePolicy(ctx, name),
  (_ctx, name) => ({ target: name }),
);

async function removePolicy(ctx: ControlContext, name: string): Promise<void> {
  if (name === DEFAULT_POLICY.name) {
    throw new OperationError(
      'the default policy is built in and cannot be deleted; change it with `osr policy update default`',
      'invalid',
    );
  }
  await getPolicy(ctx, name); // a clear not-found first
  const users = await machinesUsing(ctx, name);
  if (users.length) {
    throw new OperationError(
      `policy ${name} is used by ${users.join(', ')}; move them to another policy first (osr set-policy <machine> <policy>)`,
      'conflict',
    );
  }
  await ctx.vault.remove(Vault.policyDoc(name));
}

/** The registered machines protected with policy `name`. */
async function machinesUsing(ctx: ControlContext, name: string): Promise<string[]> {
  return (await ctx.vault.machines()).filter((m) => m.policy === name).map((m) => m.name);
}
