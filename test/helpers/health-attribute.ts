// The OsrHealth search attribute a protect workflow keeps, as an operator's Temporal UI query finds
// it (visibility, not the control plane's status).
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import { protectWorkflowId, statusQuery, type Alert } from '../../shared/contracts/protect-machine';
import type { HealthLevel } from '../../shared/machine-health';

/**
 * Waits until visibility finds the machine's running workflow with OsrHealth = level; with `kind`,
 * also until the workflow's own alerts (its status query) hold one of that kind.
 */
export async function untilHealthAttribute(
  client: Client,
  machine: string,
  level: HealthLevel,
  options: { timeoutMs?: number; kind?: Alert['kind'] } = {},
): Promise<void> {
  const query = `OsrHealth = '${level}' AND OsrMachine = '${machine}' AND ExecutionStatus = 'Running'`;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  const handle = client.workflow.getHandle(protectWorkflowId(machine));
  for (;;) {
    let found = false;
    for await (const wf of client.workflow.list({ query })) found ||= wf.workflowId === handle.workflowId;
    const alerts = options.kind ? (await handle.query(statusQuery)).alerts : [];
    if (found && (!options.kind || alerts.some((a) => a.kind === options.kind))) return;
    if (Date.now() > deadline)
      assert.fail(
        `no workflow of ${machine} with ${query}${options.kind ? ` and a ${options.kind} alert of its own (it has ${alerts.map((a) => a.kind).join(', ') || 'none'})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}
