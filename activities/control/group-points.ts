// The catalog side of a consistency group: a group point is written once every member's point is
// published, so a group point in the vault always names points that exist.
import type { GroupPoint } from '../../shared/group-types';
import { groupDocs } from '../../shared/group-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import type { Vault } from '../../lib/azure/vault';
import { ApplicationFailure } from '@temporalio/common';

/** The members' current definitions (sockets, quiesce commands), read at each cut. */
export async function membersOf(deps: { vault: Vault }, machines: string[]): Promise<ProtectedMachine[]> {
  return Promise.all(
    machines.map(async (name) => {
      const machine = await deps.vault.machine(name);
      if (!machine)
        throw ApplicationFailure.nonRetryable(
          `member ${name} is no longer protected: remove it from the group (osr group delete, then create it again without it)`,
        );
      return machine;
    }),
  );
}

export async function publishGroupPoint(deps: { vault: Vault }, point: GroupPoint): Promise<GroupPoint> {
  const name = groupDocs.point(point.group, point.id);
  // Idempotent: a retried activity finds its own document.
  const existing = await deps.vault.read<GroupPoint>(name);
  if (existing) return existing.value;
  await deps.vault.write(name, point);
  return point;
}
