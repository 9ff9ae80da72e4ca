// Every workflow the control worker runs. Workflow code is deterministic: it imports only
// @temporalio/workflow, @temporalio/common and types (lint-enforced).
export { stackCheck } from './stack-check';
export { checkSource } from './check-source';
export { discoverHost } from './discover-host';
export { protectMachine } from './protect-machine/workflow';
export { testFailover, cleanupTestFailover } from './test-failover';
export { failover } from './failover';
export { recoveryPlan } from './recovery-plan';
export { consistencyGroup } from './consistency-group/workflow';
export { reprotect } from './reprotect/workflow';
export { failback } from './failback';
export { reenable } from './reenable';
export { failbackPlan } from './failback-plan';
export { endProtection } from './end-protection';
export { approvalRequest } from './approval';
export { upgradeAgent } from './upgrade-agent';
export { resumeAgentWrites } from './resume-agent-writes';
