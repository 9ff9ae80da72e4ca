// Replication policies in the vault.
import { DEFAULT_POLICY, validatePolicy } from '../shared/policy';
import type { ReplicationPolicy } from '../shared/replication-types';
import { Vault, VaultConflictError } from '../lib/azure/vault';
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
  const policy = await ctx.vault.policy(name);
  if (policy) return policy;
  if (name === DEFAULT_POLICY.name) return DEFAULT_POLICY;
  const known = (await listPolicies(ctx)).map((p) => p.name).join(', ');
  throw new OperationError(
    `no policy named ${name}; known policies: ${known}. Create it with \`osr policy create ${name}\``,
    'not-found',
  );
}
