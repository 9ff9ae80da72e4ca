// The public face of the checkSource workflow: is a machine's --qmp path a QMP monitor, as a
// process server of its site sees it? Pure definitions, shared by the workflow and the operations.

export interface CheckSourceInput {
  site: string;
  qmpSocket: string;
  /** How long a process server of the site has to take and answer the probe. */
  timeoutSeconds?: number;
}

export type CheckSourceResult =
  | { ok: true; greeted: boolean }
  | { ok: false; problem: 'refused' | 'unavailable' | 'failed'; message: string };

/** The workflow's signature, for a typed client call without importing workflow code. */
export type CheckSourceWorkflow = (input: CheckSourceInput) => Promise<CheckSourceResult>;
