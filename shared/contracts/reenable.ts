// The public face of the reenable workflow (forward replication again after a failback): input and
// workflow id. Its job status and query are the failback job's (FailbackStatus, kind 'reenable').
// Pure definitions, shared by the workflow, the operations (CLI, HTTP API) and tests.

export interface ReenableInput {
  job: string;
  machine: string;
  /** The machine's (primary) site: its master target forgets the reverse direction's state. */
  site: string;
  failoverJob: string;
  /** A machine with the Mobility agent: its master target is the process server holding the agent. */
  agentId?: string;
}

export function reenableWorkflowId(machine: string, job: string): string {
  return `reenable/${machine}/${job}`;
}
