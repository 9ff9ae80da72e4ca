// The public face of the discoverHost workflow: a host's machines, as a process server of that
// host sees them (its own task queue). `osr host add` runs it as the check that the host answers,
// `osr discover` for the list. Pure definitions, shared by the workflow and the operations.
import type { DiscoveredMachine, HostRecord } from '../host-types';

export interface DiscoverHostInput {
  host: HostRecord;
  /** Registered machines (name and QMP socket), to say which discovered machine each protects. */
  registered: Array<{ name: string; qmpSocket?: string }>;
  /** How long a process server of the host has to take and answer. */
  timeoutSeconds?: number;
}

export type DiscoverHostResult =
  | { ok: true; machines: DiscoveredMachine[] }
  | {
      ok: false;
      /**
       * no-server: no process server of the host took the work; otherwise what the host's
       * connector said (unreachable, certificate, credentials, not-vsphere, not-found, unavailable…).
       */
      problem: string;
      message: string;
    };

export type DiscoverHostWorkflow = (input: DiscoverHostInput) => Promise<DiscoverHostResult>;

export const discoverHostWorkflowId = (host: string, at: string) => `discover/${host}/${at}`;
