// Before `osr protect` records anything: is the --qmp path a QMP monitor, does the process already
// run an NBD server OSR must be told about, and which registered machines use the same monitor?
// Checked here, on the process server of the machine's site, because only the machine's host can
// see its socket; the control plane (CLI, `osr serve`) may run anywhere.
import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { checkAzureReadiness } from '../../lib/qemu/azure-readiness';
import { CbtConnector } from '../../lib/qemu/cbt-connector';
import { nbdServerAnswers } from '../../lib/qemu/cbt-point-state';
import { nbdServerRunsMessage, nbdServerState } from '../../lib/qemu/nbd-server-state';
import { QmpClient } from '../../lib/qemu/qmp-client';
import { sameFile } from '../../lib/qemu/socket-discovery';
import type { AzureReadiness } from '../../shared/azure-readiness';
import { FAILURE } from '../../shared/failures';
import { LibvirtRefusal, probeLibvirt } from './probe-libvirt';

export interface ProbeSourceInput {
  /** A QEMU machine's monitor; absent for a libvirt domain. */
  qmpSocket?: string;
  /** A libvirt domain (activities/process-server/probe-libvirt.ts). */
  libvirt?: { uri: string; domain: string };
  /** The machine's name, --nbd and --disks as given to `osr protect`. */
  machine?: string;
  nbdSocket?: string;
  disks?: string[];
  /** Registered machines of the site: which of them use this same monitor? */
  others?: Array<{ name: string; qmpSocket: string }>;
  /** The machine's guest agent (--guest-agent): the Azure readiness check looks inside through it. */
  guestAgentSocket?: string;
}

export interface ProbeSourceResult {
  /** false: the monitor accepted but stayed silent (another client holds it; the process server will wait its turn). */
  greeted: boolean;
  /** The source's disks, when the monitor answered. */
  disks?: string[];
  /** Names among `others` whose QMP socket is this one (the same file, whatever the path). */
  sameSocket?: string[];
  /** What the guest showed of its Azure readiness, or why it was not checked. */
  azureReadiness?: AzureReadiness;
  /** A libvirt domain's own definition (`virsh dumpxml --inactive`), kept in the vault at protect. */
  domainXml?: string;
}

export interface ProbeSourceDeps {
  /** The process server's per-machine work folders (its own NBD server's socket is in them). */
  workRoot?: string;
}

function refused(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FAILURE.SourceRefused, nonRetryable: true });
}

/**
 * Refuses a --qmp path that is no QMP monitor (missing, a plain file, a dead socket, an NBD
 * socket) and, without --nbd, a process that runs its own NBD server. A monitor that accepts but
 * stays silent (another client holds it; QEMU serves one at a time) is not refused.
 */
export async function probeSource(
  input: ProbeSourceInput,
  deps: ProbeSourceDeps = {},
): Promise<ProbeSourceResult> {
  const result = await probeMonitor(input, deps);
  // Only a source that passed is checked inside; the check never refuses protection.
  return { ...result, azureReadiness: await checkAzureReadiness(input.guestAgentSocket) };
}

async function probeMonitor(input: ProbeSourceInput, deps: ProbeSourceDeps): Promise<ProbeSourceResult> {
  if (input.libvirt)
    return probeLibvirt(input.libvirt, input.disks).catch((err: unknown) => {
      throw err instanceof LibvirtRefusal ? refused(err.message) : err;
    });
  const { qmpSocket } = input;
  if (!qmpSocket)
    throw refused('protect needs --qmp <socket> (a QEMU machine) or --host and --domain (a libvirt domain)');
  if (!fs.existsSync(qmpSocket))
    throw refused(
      `no QMP socket at ${qmpSocket}: start the VM or qemu-storage-daemon with a QMP monitor (--chardev socket,path=…,server=on,wait=off --monitor chardev=…) and pass its path with --qmp. Nothing was started.`,
    );
  const stat = fs.statSync(qmpSocket);
  const sameSocket = (input.others ?? []).filter((o) => sameFile(stat, o.qmpSocket)).map((o) => o.name);
  let qmp: QmpClient | undefined;
  try {
    try {
      qmp = await QmpClient.connect(qmpSocket, { greetingTimeoutMs: 3000 });
    } catch (err) {
      const message = (err as Error).message;
      if (/sent no greeting/.test(message)) return { greeted: false, sameSocket };
      throw refused(`${message}. Nothing was started.`);
    }
    const disks = (await new CbtConnector(qmp, { workDir: deps.workRoot ?? '/nonexistent' }).listDisks()).map(
      (d) => d.node,
    );
    // A --disks list naming disks the source lacks is reported by the enable step, as before.
    const disksExist = (input.disks ?? []).every((d) => disks.includes(d));
    if (!input.nbdSocket && disksExist) {
      const nbd = await nbdServerState(qmp);
      // The NBD server this process server started for the machine before (its socket is ours).
      const own =
        deps.workRoot && input.machine ? path.join(deps.workRoot, input.machine, 'nbd.sock') : undefined;
      if (nbd.running && !(own && fs.existsSync(own) && (await nbdServerAnswers(own))))
        throw refused(`${qmpSocket}: ${nbdServerRunsMessage(nbd.exports)}. Nothing was started.`);
    }
    return { greeted: true, disks, sameSocket };
  } finally {
    await qmp?.close();
  }
}
