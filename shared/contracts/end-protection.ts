// The public face of the endProtection workflow: the cleanup `osr unprotect` runs for a machine
// whose protectMachine workflow was ended outside OSR (workflows/end-protection.ts).
import type { ProtectedMachine } from '../replication-types';

export interface EndProtectionInput {
  machine: ProtectedMachine;
  keepReplica?: boolean;
}

export interface EndProtectionResult {
  trackingRemoved: boolean;
  replicaDeleted: boolean;
  /** What could not be done, with the reason (e.g. the source does not answer). */
  notes: string[];
}

export type EndProtectionWorkflow = (input: EndProtectionInput) => Promise<EndProtectionResult>;
