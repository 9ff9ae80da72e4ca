// The dashboard draws only what the signed-in identity's role may do (it asks GET /v1/me), in
// headless Chromium against the real API, Temporal dev server and Azurite; and what it does not
// draw, the API still refuses from the same page (403 naming the role).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startApiServer, type ApiServer } from '../../api/server';
import { Vault } from '../../lib/azure/vault';
import { createLogger } from '../../lib/config/logger';
import { cliActor, runAs } from '../../operations/audit';
import { ControlContext } from '../../operations/context';
import { ApprovalPendingError } from '../../operations/approvals';
import * as plans from '../../operations/plans';
import { createToken } from '../../operations/tokens';
import type { ProtectedMachine } from '../../shared/replication-types';
import { ROLES, type Role } from '../../shared/roles';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const M = 'roles-vm';
let stack: TestStack;
let ctx: ControlContext;
let api: ApiServer;
let browser: Browser;
const secrets = {} as Record<Role, string>;

before(async () => {
  stack = await startTestStack();
  await stack.startWorker('control');
  ctx = new ControlContext(stack.config);
  // A machine registered in the vault (its protection not running): the dashboard lists it with
  // its buttons, and a plan can name it.
  const machine: ProtectedMachine = {
    name: M,
    site: 'primary',
    source: { type: 'qemu', qmpSocket: '/nonexistent/qmp.sock' },
    policy: 'default',
    createdAt: new Date().toISOString(),
  };
  await ctx.vault.write(Vault.machineDoc(M), machine);
  await runAs(cliActor(), async () => {
    await plans.createPlan(ctx, { name: 'shop', groups: [{ machines: [M] }] });
    await plans.createPlan(ctx, { name: 'gated', groups: [{ machines: [M] }], requireApproval: true });
    for (const role of ROLES) secrets[role] = (await createToken(ctx, { name: `${role}-web`, role })).secret;
  });
  // The admin asks for the gated plan's failover: it waits for another identity.
  const asked = runAs({ via: 'api', user: 'admin-web', role: 'admin', host: 'test' }, () =>
    plans.startPlan(ctx, 'gated', 'failover', { wait: false }),
  );
  await assert.rejects(asked, (err: Error) => err instanceof ApprovalPendingError);
  api = await startApiServer({
    config: stack.config,
    host: '127.0.0.1',
    port: 0,
    ctx,
    logger: createLogger('dashboard-roles', 'silent'),
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await api?.close();
  await ctx?.close();
  await stack?.stop();
});

const EXPECTED: Record<Role, { machine: string[]; plan: string[]; approval: string[] }> = {
  viewer: { machine: [], plan: [], approval: [] },
  operator: {
    machine: ['cleanup', 'drill'],
    plan: ['plan-drill'],
    approval: ['approve-request', 'reject-request'],
  },
  // The admin asked for the waiting request: another identity must decide it.
  admin: { machine: ['cleanup', 'drill', 'failover'], plan: ['plan-drill', 'plan-failover'], approval: [] },
};

for (const role of ROLES)
  test(`the dashboard signed in as ${role} shows its identity and only the buttons the ${role} role allows`, async () => {
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on('pageerror', (err) => errors.push(err.message));
    try {
      await tab.goto(`${api.url}/#token=${secrets[role]}`);
      const row = tab.locator(`tr[data-machine="${M}"]`);
      await row.waitFor({ timeout: 30_000 });
      const card = tab.locator('article[data-plan="shop"]');
      await card.waitFor({ timeout: 30_000 });
      assert.equal(await tab.locator('#identity').innerText(), `${role}-web (${role})`);
      const actions = async (scope: typeof row) =>
        (
          await scope
            .locator('button[data-action]')
            .evaluateAll((els) => els.map((e) => e.getAttribute('data-action')))
        )
          .map(String)
          .sort();
      assert.deepEqual(await actions(row), EXPECTED[role].machine);
      assert.deepEqual(await actions(card), EXPECTED[role].plan);
      const request = tab.locator('li[data-approval^="approval/plan-failover/gated/"]');
      await request.waitFor({ timeout: 30_000 });
      assert.match(await request.innerText(), /plan-failover of gated, asked by admin-web/);
      assert.deepEqual(await actions(request), EXPECTED[role].approval);
      if (role === 'admin') assert.match(await request.innerText(), /another identity must decide/);
      // What is not drawn is refused by the API all the same, from this page with this token.
      const refused = (await tab.evaluate(
        async ([machine, token]) => {
          const res = await fetch(`/v1/machines/${machine}/failover`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
            body: '{}',
          });
          return { status: res.status, body: await res.json() };
        },
        [M, secrets[role]],
      )) as { status: number; body: { error: { message: string } } };
      if (role === 'admin') assert.notEqual(refused.status, 403);
      else {
        assert.equal(refused.status, 403);
        assert.match(
          refused.body.error.message,
          new RegExp(`needs the admin role; identity ${role}-web holds ${role}`),
        );
      }
      assert.deepEqual(errors, [], 'no script error on the page');
    } finally {
      await tab.close();
    }
  });
