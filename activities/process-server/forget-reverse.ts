// What a process server kept of a recovery-site copy it read during reprotect: the connector's work
// folder (`<machines>/<machine>.reverse/`) and, for a libvirt domain, the backup job's export
// folder. Removed once reverse replication is over for good (failback brought the original up, or
// reprotect was stopped and its tracking disabled), never while a cycle may still need them.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { ProtectedMachine } from '../../shared/replication-types';
import { reverseId } from '../../shared/failback-types';
import { exportFolderOf } from '../../lib/libvirt/export-folder';
import type { SourceDeps } from './machine-source';

export async function forgetReverseSource(
  deps: SourceDeps,
  machine: ProtectedMachine,
): Promise<{ removed: string[] }> {
  // Only a reverse source: a forward machine's folder may hold an NBD server socket still in use.
  if (!machine.name.endsWith(reverseId('')))
    throw ApplicationFailure.nonRetryable(`${machine.name} is not a recovery-site copy read by reprotect`);
  const removed: string[] = [];
  const work = path.join(deps.workRoot, machine.name);
  if (await exists(work)) removed.push(work);
  await fs.rm(work, { recursive: true, force: true });
  if (machine.source.type === 'libvirt') {
    // On the libvirt host (over SSH for a remote one; a recovery host is the applier's own).
    const folder = exportFolderOf(machine.source);
    if (folder.remoteUri || (await exists(folder.dir))) removed.push(folder.dir);
    await folder.remove();
  }
  return { removed };
}

const exists = (p: string) =>
  fs.stat(p).then(
    () => true,
    () => false,
  );
