// The operator's dashboard in headless Chromium, against the real stack (see operator.test.ts):
// a machine with its RPO, a drill started by clicks, a plan drill's manual action approved, and a
// failover then its commit, each confirmed.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import type { AuditEntry } from '../../operations/audit';
import * as failover from '../../operations/failover';
import * as plans from '../../operations/plans';
import { M, token, shots, ctx, api, get, useOperatorStack } from '../helpers/operator-fixture';
import { openDashboardTab } from '../helpers/dashboard-tab';

useOperatorStack();

test('dashboard in headless Chromium: machine with its RPO, a drill started with a confirmed click, the job until ready', async () => {
  const page = await fetch(`${api.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);

  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    const { tab, errors } = await openDashboard(browser);
    const row = tab.locator(`tr[data-machine="${M}"]`);
    await row.locator('td[data-rpo]').waitFor({ timeout: 30_000 });
    assert.equal(await tab.evaluate('location.hash'), '', 'the token leaves the address bar');
    assert.match(await row.innerText(), /protected/);
    assert.match(await row.locator('td[data-rpo]').innerText(), /\d+ (s|min) \/ 2 h/);
    // The RPO bar is the RPO's share of the threshold: seconds of 2 h are a sliver.
    const share = (await tab.evaluate(
      `(() => { const s = document.querySelector('tr[data-machine="${M}"] .bar > span'); return s.getBoundingClientRect().width / s.parentElement.getBoundingClientRect().width; })()`,
    )) as number;
    assert.ok(share > 0 && share < 0.1, `RPO bar ${share}`);
    await tab.locator(`figure[data-chart="${M}"] path.series`).waitFor();
    await tab.locator('tr[data-server]').first().waitFor();
    assert.match(await tab.locator('#alerts').innerText(), /memory-pressure/);
    await tab.screenshot({ path: path.join(shots, '1-overview.png'), fullPage: true });

    await row.locator('button[data-action="drill"]').click();
    const dialog = tab.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), new RegExp(`Drill of ${M}`));
    await tab.screenshot({ path: path.join(shots, '2-confirm.png') });
    await tab.locator('#confirm-ok').click();
    const job = tab.locator(`li[data-job^="drill/${M}/"]`);
    await job.waitFor({ timeout: 30_000 });
    await tab.locator(`li[data-job^="drill/${M}/"][data-state="ready"]`).waitFor({ timeout: 120_000 });
    const workflowId = (await job.getAttribute('data-job')) as string;
    await tab.screenshot({ path: path.join(shots, '3-drill-ready.png'), fullPage: true });
    assert.deepEqual(errors, [], 'no script error on the page');

    // The drill is real: its record is in the vault, and the audit log names the dashboard's caller.
    const drills = (await ctx.vault.list<{ job: string; kind: string }>(`recovered/${M}/`)).filter(
      (r) => r.kind === 'drill',
    );
    assert.ok(drills.some((d) => workflowId.endsWith(d.job)));
    const audit = (await (await get('/v1/audit?action=drill.start')).json()) as { entries: AuditEntry[] };
    assert.equal(audit.entries[0]?.actor.via, 'api');

    // Without the fragment, the page asks for the token once.
    const fresh = await browser.newPage();
    await fresh.goto(`${api.url}/`);
    await fresh.locator('dialog#login').waitFor({ state: 'visible' });
    await fresh.locator('#login-token').fill(token);
    await fresh.locator('#login-name').fill('bob');
    await fresh.locator('#login-form button[type="submit"]').click();
    await fresh.locator(`tr[data-machine="${M}"] td[data-rpo]`).waitFor({ timeout: 30_000 });
  } finally {
    await browser?.close();
  }
  await failover.cleanupTestFailover(ctx, M);
});

async function openDashboard(browser: Browser) {
  const { tab, errors } = await openDashboardTab(browser, api.url, token);
  await tab.locator(`tr[data-machine="${M}"]`).waitFor({ timeout: 30_000 });
  return { tab, errors };
}

test('dashboard: a plan drill waits for a manual action, approved with a confirmed click', async () => {
  await plans.createPlan(ctx, {
    name: 'shop',
    groups: [{ machines: [M], pre: [{ kind: 'manual', instruction: 'Check the database replica' }] }],
  });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const { tab, errors } = await openDashboard(browser);
    const card = tab.locator('article[data-plan="shop"]');
    await card.waitFor({ timeout: 30_000 });
    await card.locator('button[data-action="plan-drill"]').click();
    await tab.locator('dialog#confirm').waitFor({ state: 'visible' });
    await tab.locator('#confirm-ok').click();
    const approveButton = card.locator('.waiting button[data-action="approve"]');
    await approveButton.waitFor({ timeout: 60_000 });
    assert.match(await card.locator('.waiting').innerText(), /g1-pre-1: Check the database replica/);
    await tab.screenshot({ path: path.join(shots, '4-plan-waiting.png'), fullPage: true });
    await approveButton.click();
    await tab.locator('dialog#confirm').waitFor({ state: 'visible' });
    await tab.locator('#confirm-ok').click();
    await card.locator('.badge', { hasText: 'test-failover: ready' }).waitFor({ timeout: 120_000 });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
  const [job] = await plans.listPlanJobs(ctx, 'shop');
  assert.ok(job);
  const status = await plans.planStatus(ctx, job.job);
  assert.equal(status.state, 'ready');
  assert.equal(status.groups[0]?.actions[0]?.approvedBy, 'dashboard');
  await plans.startPlan(ctx, 'shop', 'cleanup');
});

test('dashboard: failover of the machine, then commit, each confirmed', async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const { tab, errors } = await openDashboard(browser);
    const row = tab.locator(`tr[data-machine="${M}"]`);
    await row.locator('button[data-action="failover"]').click();
    const dialog = tab.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), /This is not a drill/);
    // Cancel does nothing.
    await tab.locator('#confirm-cancel').click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(
      (await ctx.vault.list(`recovered/${M}/`)).filter((r) => (r as { kind: string }).kind === 'failover')
        .length,
      0,
    );

    await row.locator('button[data-action="failover"]').click();
    await dialog.waitFor({ state: 'visible' });
    await tab.locator('#confirm-ok').click();
    const job = tab.locator(`li[data-job^="failover/${M}/"][data-state="failed-over"]`);
    await job.waitFor({ timeout: 120_000 });
    await tab.screenshot({ path: path.join(shots, '5-failed-over.png'), fullPage: true });
    await job.locator('button[data-action="commit"]').click();
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), /cannot be undone/);
    await tab.locator('#confirm-ok').click();
    await tab.locator(`li[data-job^="failover/${M}/"][data-state="committed"]`).waitFor({ timeout: 120_000 });
    await tab.screenshot({ path: path.join(shots, '6-committed.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
  const audit = (await (await get('/v1/audit?action=failover&limit=5')).json()) as { entries: AuditEntry[] };
  assert.deepEqual(
    audit.entries.slice(0, 2).map((e) => [e.action, e.outcome]),
    [
      ['failover.commit', 'ok'],
      ['failover.start', 'ok'],
    ],
  );
});
