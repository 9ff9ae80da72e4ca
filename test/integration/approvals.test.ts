// Four eyes (requireApproval) against the real API, Temporal dev server, control worker and
// Azurite: a plan's failover asked by one identity waits (202, state awaiting-approval in the job
// status, the approvals list and the OsrState search attribute) until another identity with the
// operator or admin role approves it; the requester cannot, a viewer may not; approved, it runs
// at once as the approver; rejected or expired, it never runs; the audit log says who asked and
// who decided; the CLI waits with exit 6 and decides as the OS user.
import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, test } from 'node:test';
import { startApiServer, type ApiServer } from '../../api/server';
import { Vault } from '../../lib/azure/vault';
import { createLogger } from '../../lib/config/logger';
import { cliActor, listAudit, runAs } from '../../operations/audit';
import { ControlContext } from '../../operations/context';
import * as plans from '../../operations/plans';
import { createToken } from '../../operations/tokens';
import { approvalStatusQuery, type ApprovalStatus } from '../../shared/contracts/approval';
import type { ProtectedMachine } from '../../shared/replication-types';
import { runCli } from '../helpers/cli';
import { pollFor } from '../helpers/poll';
import { assertReplays } from '../helpers/replay';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const M = 'four-eyes-vm';
let stack: TestStack;
let ctx: ControlContext;
let api: ApiServer;
const tokens: Record<'alice' | 'bob' | 'carol' | 'vic', string> = { alice: '', bob: '', carol: '', vic: '' };

before(async () => {
  stack = await startTestStack();
  await stack.startWorker('control');
  ctx = new ControlContext(stack.config);
  const machine: ProtectedMachine = {
    name: M,
    site: 'primary',
    source: { type: 'qemu', qmpSocket: '/nonexistent/qmp.sock' },
    policy: 'default',
    createdAt: new Date().toISOString(),
  };
  await ctx.vault.write(Vault.machineDoc(M), machine);
  await runAs(cliActor(), async () => {
    await plans.createPlan(ctx, { name: 'shop', groups: [{ machines: [M] }], requireApproval: true });
    await plans.createPlan(ctx, { name: 'free', groups: [{ machines: [M] }] });
    for (const [name, role] of [
      ['alice', 'operator'],
      ['bob', 'admin'],
      ['carol', 'admin'],
      ['vic', 'viewer'],
    ] as const)
      tokens[name] = (await createToken(ctx, { name, role })).secret;
  });
  api = await startApiServer({
    config: stack.config,
    host: '127.0.0.1',
    port: 0,
    ctx,
    logger: createLogger('approvals-test', 'silent'),
  });
});

after(async () => {
  await api?.close();
  await ctx?.close();
  await stack?.stop();
});

async function call(
  method: string,
  path: string,
  who: keyof typeof tokens,
  body?: unknown,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<{ status: number; body: any; location: string | null }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens[who]}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), location: res.headers.get('location') };
}

const decidePath = (id: string, decision: 'approve' | 'reject') =>
  `/v1/approvals/${encodeURIComponent(id)}/${decision}`;

/** The request's OsrState as Temporal's visibility shows it (what the Web UI filters on). */
async function searchState(id: string, state: string): Promise<void> {
  await pollFor(
    async () => {
      for await (const wf of stack.client.workflow.list({
        query: `WorkflowId = '${id}' AND OsrJobKind = 'approval' AND OsrState = '${state}'`,
      }))
        return wf.workflowId;
      return undefined;
    },
    { timeoutMs: 30_000, intervalMs: 300, failure: () => new Error(`${id} never had OsrState ${state}`) },
  );
}

test('a plan failover asked by one identity waits until another approves it, then runs as the approver', async () => {
  const asked = await call('POST', '/v1/plans/shop/failover', 'carol', {});
  assert.equal(asked.status, 202, JSON.stringify(asked.body));
  const approval = asked.body.approval as ApprovalStatus;
  assert.equal(approval.state, 'awaiting-approval');
  assert.equal(approval.request.requestedBy, 'carol');
  assert.equal(approval.request.kind, 'plan-failover');
  assert.match(approval.id, /^approval\/plan-failover\/shop\//);
  // Nothing started: no plan job, no lock.
  assert.deepEqual(await plans.listPlanJobs(ctx, 'shop'), []);

  const job = await call('GET', asked.location as string, 'vic');
  assert.equal(job.status, 200);
  assert.equal(job.body.kind, 'approval');
  assert.equal(job.body.progress.state, 'awaiting-approval');
  const listed = await call('GET', '/v1/approvals', 'vic');
  assert.deepEqual(
    listed.body.approvals.map((a: ApprovalStatus) => a.id),
    [approval.id],
  );
  await searchState(approval.id, 'awaiting-approval');

  const own = await call('POST', decidePath(approval.id, 'approve'), 'carol');
  assert.equal(own.status, 409);
  assert.match(own.body.error.message, /carol asked for this plan-failover of shop; another identity/);
  const viewer = await call('POST', decidePath(approval.id, 'approve'), 'vic');
  assert.equal(viewer.status, 403);
  assert.match(viewer.body.error.message, /needs the operator role; identity vic holds viewer/);

  const approved = await call('POST', decidePath(approval.id, 'approve'), 'alice', {
    note: 'checked with carol',
  });
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  assert.equal(approved.body.decidedBy, 'alice');
  assert.equal(approved.body.state, 'done');
  // It ran, as alice: this test's machine has no recovery point, so the plan refuses to start,
  // and says why (a machine with points would have started its failover job here).
  assert.match(approved.body.error, /point/i);
  const handle = stack.client.workflow.getHandle(approval.id);
  const final = (await handle.result()) as ApprovalStatus;
  assert.equal(final.state, 'done');
  assert.equal(final.decidedBy, 'alice');
  assert.equal(final.note, 'checked with carol');
  await searchState(approval.id, 'done');
  const again = await call('POST', decidePath(approval.id, 'approve'), 'bob');
  assert.equal(again.status, 409, 'a request is decided once');
  assert.match(again.body.error.message, /has ended: done by alice/);

  const [request] = await listAudit(ctx, { action: 'approval.request', target: 'shop' });
  assert.equal(request?.actor.user, 'carol');
  assert.equal(request?.outcome, 'ok');
  const [decision] = await listAudit(ctx, { action: 'approval.approve', target: approval.id, user: 'alice' });
  assert.equal(decision?.outcome, 'ok');
  const started = (await listAudit(ctx, { action: 'plan.start', target: 'shop' })).map((e) => e.actor.user);
  assert.deepEqual(started.slice(0, 2), ['alice', 'carol'], 'asked by carol (waiting), run by alice');
  await assertReplays(handle, 'approvalRequest-approved');
});

test('a plan without requireApproval starts at once; a rejected request never runs', async () => {
  const free = await call('POST', '/v1/plans/free/failover', 'carol', {});
  assert.notEqual(free.status, 202, 'no approval asked');
  assert.match(free.body.error?.message ?? '', /point/i);

  const asked = await call('POST', '/v1/plans/shop/failover', 'bob', {});
  assert.equal(asked.status, 202);
  const id = asked.body.approval.id as string;
  const rejected = await call('POST', decidePath(id, 'reject'), 'carol', { note: 'not during the sale' });
  assert.equal(rejected.status, 200);
  assert.equal(rejected.body.state, 'rejected');
  const final = (await stack.client.workflow.getHandle(id).result()) as ApprovalStatus;
  assert.equal(final.state, 'rejected');
  assert.equal(final.job, undefined);
  const [entry] = await listAudit(ctx, { action: 'approval.reject', target: id });
  assert.equal(entry?.actor.user, 'carol');
});

test('an unanswered request expires and can no longer be approved', async () => {
  const short = await startApiServer({
    config: { ...stack.config, approvals: { required: true, expireSeconds: 2 } },
    host: '127.0.0.1',
    port: 0,
    ctx: new ControlContext({ ...stack.config, approvals: { required: true, expireSeconds: 2 } }),
    logger: createLogger('approvals-test', 'silent'),
  });
  try {
    // approvals.required: every plan's failover waits, 'free' too.
    const res = await fetch(`${short.url}/v1/plans/free/failover`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.bob}`, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 202);
    const { approval } = (await res.json()) as { approval: ApprovalStatus };
    const handle = stack.client.workflow.getHandle(approval.id);
    const final = (await handle.result()) as ApprovalStatus;
    assert.equal(final.state, 'expired');
    await searchState(approval.id, 'expired');
    const late = await call('POST', decidePath(approval.id, 'approve'), 'alice');
    assert.equal(late.status, 409);
    assert.match(late.body.error.message, /has ended: expired/);
    await assertReplays(handle, 'approvalRequest-expired');
  } finally {
    await short.close();
  }
});

test('the CLI: a request waits with exit 6, is listed, and its requester (the OS user) cannot approve it', async () => {
  const asked = await runCli(['plan', 'failover', 'shop', '--json'], stack.env);
  assert.equal(asked.code, 6, asked.stderr);
  const { approval } = JSON.parse(asked.stdout) as { approval: ApprovalStatus };
  assert.equal(approval.request.requestedBy, os.userInfo().username);
  const listed = await runCli(['approvals'], stack.env);
  assert.match(
    listed.stdout,
    new RegExp(`${approval.id}\\s+plan-failover\\s+shop\\s+${os.userInfo().username}`),
  );
  const own = await runCli(['approve', approval.id], stack.env);
  assert.equal(own.code, 5);
  assert.match(own.stderr, /asked for this plan-failover of shop; another identity/);
  const status = await stack.client.workflow.getHandle(approval.id).query(approvalStatusQuery);
  assert.equal(status.state, 'awaiting-approval');
  const rejected = await runCli(['reject', approval.id, '--note', 'tested'], { ...stack.env, USER: 'x' });
  // Run locally, the CLI is the same OS user whatever $USER says: rejecting is deciding, refused too.
  assert.equal(rejected.code, 5);
  const byAlice = await call('POST', decidePath(approval.id, 'reject'), 'alice');
  assert.equal(byAlice.body.state, 'rejected');
});
