// Failback's last step on the primary site: the original disks become the machine's again. Any
// cycle the master target left half-applied is rolled back to its last point (normally none: the
// final cycle completed), the master target's exports are removed, and the machine resumes: a VM
// paused at the planned failover gets QMP `cont`; a qemu-storage-daemon (no guest) gets its thaw
// (`post`) command, the counterpart of the quiesce command that stopped its writers; a libvirt
// domain, off while the master target wrote its files, is started (`virsh start`). A machine with
// the Mobility agent runs already: its agent closes the disks, and its services are the operator's.
import type { FailbackTarget } from '../../shared/failback-types';
import type { ProtectedMachine } from '../../shared/replication-types';
import { runHook } from '../../lib/process/hook';
import { resumeIfPaused } from '../../lib/qemu/run-state';
import { rollbackIncomplete, type MasterTargetDeps } from './apply-reverse';
import { originalDomainStarted, startOriginalDomain } from './libvirt-targets';
import { removeExports } from './targets';

export interface BringUpResult {
  method: 'qmp-cont' | 'thaw-hook' | 'virsh-start' | 'none';
  note: string;
  rolledBack: Array<{ diskId: string; cycles: number[] }>;
  exportsRemoved: number;
}

export async function bringUp(
  deps: MasterTargetDeps,
  input: { machine: ProtectedMachine; target: FailbackTarget },
): Promise<BringUpResult> {
  const { machine, target } = input;
  if (await originalDomainStarted(target))
    return {
      method: 'virsh-start',
      note: `domain ${target.libvirt?.domain} runs on its original disks (started by an earlier attempt)`,
      rolledBack: [],
      exportsRemoved: 0,
    };
  const rolledBack: BringUpResult['rolledBack'] = [];
  for (const disk of target.disks) {
    const r = await rollbackIncomplete(deps, { machine: machine.name, disk });
    if (r.rolledBack.length) rolledBack.push({ diskId: disk.diskId, cycles: r.rolledBack });
  }
  const exportsRemoved = await removeExports(target);
  if (target.agent)
    return {
      method: 'none',
      note: `${machine.name}'s disks (${target.disks
        .map((d) => d.node)
        .sort()
        .join(
          ', ',
        )}) hold the recovery-site copy, closed by agent ${target.agent.agentId}: mount them and start ${machine.name}'s services (re-enable protection first to track their writes from the start)`,
      rolledBack,
      exportsRemoved,
    };
  if (target.libvirt)
    return { method: 'virsh-start', note: await startOriginalDomain(target), rolledBack, exportsRemoved };
  if (target.createdDir) {
    return {
      method: 'none',
      note: `the original disks were gone: the machine's disks are the new ones in ${target.createdDir}, served by a qemu-storage-daemon (QMP ${target.qmpSocket}, NBD ${target.nbdSocket}); attach them to the VM`,
      rolledBack,
      exportsRemoved,
    };
  }
  if (target.qmpSocket && (await resumeIfPaused(target.qmpSocket)) !== 'not-a-vm') {
    return {
      method: 'qmp-cont',
      note: `VM ${machine.name} runs on its original disks`,
      rolledBack,
      exportsRemoved,
    };
  }
  const post = machine.quiesce?.post;
  if (post) {
    await runHook(
      post,
      { ...process.env, OSR_MACHINE: machine.name, OSR_POINT_KIND: 'failback' },
      (machine.quiesce?.timeoutSeconds ?? 60) * 1000,
      `thaw command of ${machine.name}`,
    );
    return { method: 'thaw-hook', note: `thaw command of ${machine.name} run`, rolledBack, exportsRemoved };
  }
  return {
    method: 'none',
    note: `${machine.name} is served by a qemu-storage-daemon (no guest to resume) and has no thaw command: start its writers on the original disks`,
    rolledBack,
    exportsRemoved,
  };
}
