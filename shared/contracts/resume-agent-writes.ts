// The public face of the resumeAgentWrites workflow (`osr agent resume`): a machine whose writes a
// planned failover stopped gets them back, from the process server holding its agent's
// connection. Pure definitions, shared by the workflow and the operations.
export interface ResumeAgentWritesInput {
  agentId: string;
  /** The queue of the process server holding the agent's connection (agentListenerQueue). */
  queue: string;
}

export const resumeAgentWritesWorkflowId = (agentId: string) => `agent-resume/${agentId}`;
