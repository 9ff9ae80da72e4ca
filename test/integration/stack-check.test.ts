// The first end-to-end test through the real stack: workers of every role, started from the
// production entry points, each write a blob to Azurite and read it back inside a workflow.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CONTROL_TASK_QUEUE } from '../../shared/task-queues';
import type { stackCheck } from '../../workflows/stack-check';
import { startTestStack, type TestStack } from '../helpers/test-stack';
import { assertReplays } from '../helpers/replay';

let stack: TestStack;
before(async () => {
  stack = await startTestStack();
});
after(async () => stack?.stop());

test('every worker role round-trips a blob through Azurite inside one workflow', async () => {
  await Promise.all(
    (['control', 'process-server', 'cloud-applier', 'master-target'] as const).map((r) =>
      stack.startWorker(r),
    ),
  );
  const handle = await stack.client.workflow.start<typeof stackCheck>('stackCheck', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: 'test/stack-check',
    args: [{ site: stack.config.site }],
  });
  const result = await handle.result();
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.deepEqual(
    result.probes.map((p) => p.result?.role),
    ['control', 'process-server', 'cloud-applier', 'master-target'],
  );
  for (const probe of result.probes) assert.equal(probe.result?.bytes, 65536);
  await assertReplays(handle, 'stackCheck-all-roles');
});

test('a role with no worker is reported by name, not hung on', async () => {
  await stack.killWorker('master-target');
  const result = await stack.client.workflow.execute<typeof stackCheck>('stackCheck', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: 'test/stack-check-missing',
    args: [{ site: stack.config.site, scheduleToStartSeconds: 2 }],
  });
  assert.equal(result.ok, false);
  const missing = result.probes.filter((p) => !p.result);
  assert.deepEqual(
    missing.map((p) => p.queue),
    [`osr-master-target-${stack.config.site}`],
  );
  assert.match(missing[0]?.error ?? '', /no worker polled osr-master-target-primary/);
});
