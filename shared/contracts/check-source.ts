// The public face of the checkSource workflow: is a machine's --qmp path a QMP monitor, as a
// process server of its site sees it? Pure definitions, shared by the workflow and the operations.
import type { AzureReadiness } from '../azure-readiness';

export interface CheckSourceInput {
  site: string;
  /** The machine's host (`--host`): probed by that host's process servers instead of the site's. */
  host?: string;
  /** A QEMU machine's monitor; absent for a libvirt domain. */
  qmpSocket?: string;
  /** A libvirt domain: its host's URI and the domain's name (probed instead of a monitor). */
  libvirt?: { uri: string; domain: string };
  /** The machine's name, --nbd and --disks as `osr protect` was given them. */
  machine?: string;
  nbdSocket?: string;
  disks?: string[];
  /** Registered machines of the site, to find those on the same QMP monitor. */
  others?: Array<{ name: string; qmpSocket: string }>;
  /** The machine's guest agent socket: the Azure readiness check looks inside through it. */
  guestAgentSocket?: string;
  /** How long a process server of the site has to take and answer the probe. */
  timeoutSeconds?: number;
}

export type CheckSourceResult =
  | {
      ok: true;
      greeted: boolean;
      /** The source's disks, when its monitor answered. */
      disks?: string[];
      /** Names among `others` whose QMP socket is this same one. */
      sameSocket?: string[];
      /** The Azure readiness check's result (absent from process servers older than it). */
      azureReadiness?: AzureReadiness;
      /** A libvirt domain's own definition (inactive XML), for the vault. */
      domainXml?: string;
    }
  | { ok: false; problem: 'refused' | 'unavailable' | 'failed'; message: string };

/** The workflow's signature, for a typed client call without importing workflow code. */
export type CheckSourceWorkflow = (input: CheckSourceInput) => Promise<CheckSourceResult>;
