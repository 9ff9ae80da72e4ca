// The public face of the upgradeAgent workflow (`osr agent upgrade`): the new agent bundle goes
// to the machine over the agent's own connection, from the process server holding it. Pure
// definitions, shared by the workflow and the operations.
import { defineQuery } from '@temporalio/workflow';

export interface UpgradeAgentInput {
  agentId: string;
  /** The queue of the process server holding the agent's connection (agentListenerQueue). */
  queue: string;
  /** SHA-256 of the bundle this release ships: the agent refuses any other bytes. */
  sha256: string;
  /** The new version must connect within this long, or the agent rolls back by itself. */
  timeoutSeconds: number;
}

export type UpgradeAgentStep = 'staging' | 'restarting' | 'done';

export interface UpgradeAgentStatus {
  step: UpgradeAgentStep;
  from?: string;
  to?: string;
}

export interface UpgradeAgentResult {
  outcome: 'upgraded' | 'rolled-back';
  from: string;
  to: string;
  /** The version that runs now. */
  version: string;
}

export type UpgradeAgentWorkflow = (input: UpgradeAgentInput) => Promise<UpgradeAgentResult>;

export const upgradeAgentStatusQuery = defineQuery<UpgradeAgentStatus>('status');

export const upgradeAgentWorkflowId = (agentId: string) => `agent-upgrade/${agentId}`;
