// What a process server kept of a recovery-site copy it read during reprotect: the connector's work
// folder (`<machines>/<machine>.reverse/`) and, for a libvirt domain, the backup job's export
// folder. Removed once reverse replication is over for good (failback brought the original up, or
// reprotect was stopped and its tracking disabled), never while a cycle may still need them.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { ProtectedMachine } from '../../shared/replication-types';
import { reverseId } from '../../shared/failback-types';
import { exportDirOf } from '../../lib/libvirt/libvirt-source';
import type { SourceDeps } from './machine-source';

export async function forgetReverseSource(
  deps: SourceDeps,
  machine: ProtectedMachine,
): Promise<{ removed: string[] }> {
  // Only a reverse source: a forward machine's folder may hold an NBD server socket still in use.
  if (!machine.name.endsWith(reverseId('')))
    throw ApplicationFailure.nonRetryable(`${machine.name} is not a recovery-site copy read by reprotect`);
  const folders = [path.join(deps.workRoot, machine.name)];
  if (machine.source.type === 'libvirt') folders.push(exportDirOf(machine.source));
  const removed: string[] = [];
  for (const folder of folders) {
    const there = await fs.stat(folder).then(
      () => true,
      () => false,
    );
    await fs.rm(folder, { recursive: true, force: true });
    if (there) removed.push(folder);
  }
  return { removed };
}
