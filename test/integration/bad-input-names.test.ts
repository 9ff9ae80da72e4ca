// Names at the boundary of every operation, as an operator (or a script) meets them: a name that
// is not a name (`../policies/demo`, `../../etc`) is refused with 400 on every API route that
// takes one and exit 2 on every CLI command, and nothing is read as it or written. The other bad
// input refusals: bad-input.test.ts (its conventions hold here too).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { routes as apiRoutes } from '../../api/routes';
import { startApiServer } from '../../api/server';
import { withoutRateLimit } from '../helpers/api-client';
import { createLogger } from '../../lib/config/logger';
import type { ControlContext } from '../../operations/context';
import { CONTAINERS } from '../../lib/azure/blob-client';
import type { AuditEntry } from '../../operations/audit';
import { createPolicy } from '../../operations/policies';
import { type TestMachine } from '../helpers/qemu-machine';
import type { TestStack } from '../helpers/test-stack';
import { cliFor } from '../helpers/cli';
import { BAD_INPUT_MACHINE, useMachineTestbed } from '../helpers/testbed';

let stack: TestStack;
let ctx: ControlContext;
let vm: TestMachine;
let scratch: string;

const osr = cliFor(() => stack.env);

useMachineTestbed(BAD_INPUT_MACHINE, (bed) => ({ stack, ctx, vm, scratch } = bed));

test('a name that is not a name (../policies/demo, ../../etc): 400 on every API route, exit 2 on every CLI command; nothing read as it, nothing written', async () => {
  // The document the names aim at, so that reading it "as a machine" would answer.
  await createPolicy(ctx, { name: 'demo', crashPointSeconds: 3600, appPointSeconds: 0 });
  const blobs = async (container: string): Promise<string[]> => {
    const names: string[] = [];
    for await (const b of ctx.blobService.getContainerClient(container).listBlobsFlat()) names.push(b.name);
    return names.sort();
  };
  const vaultBefore = await blobs(CONTAINERS.vault);
  const failoverBefore = await blobs(CONTAINERS.failover);
  const policyOfBi1 = (await ctx.vault.machine('bi1'))?.policy;
  const client = await ctx.client();
  const workflows = async (): Promise<Set<string>> => {
    const ids = new Set<string>();
    for await (const wf of client.workflow.list()) ids.add(wf.workflowId);
    return ids;
  };
  const workflowsBefore = await workflows();

  const fix = 'is not valid: use lower-case letters, digits and dashes \\(at most 63\\)';
  const named = (noun: string, name: string, rest = fix) =>
    new RegExp(`${noun} "${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" ${rest}`);
  const JOB = 'is not valid: use a job id or workflow id';
  const POINT = 'is not valid: use latest, latest-app, a point id';
  const AGENT = 'is not valid: use ag- and 12 hex digits';
  const SITE = 'is not valid: use lower-case letters, digits and dashes \\(at most 40\\)';

  // Every API route that takes a name in its path: [method, template, noun, body].
  const pathRoutes: Array<[string, string, string, string?, unknown?]> = [
    ['GET', '/v1/machines/{name}', 'machine name'],
    ['GET', '/v1/machines/{name}/points', 'machine name'],
    ['POST', '/v1/machines/{name}/points', 'machine name', fix, { kind: 'crash' }],
    ['POST', '/v1/machines/{name}/resync', 'machine name'],
    ['POST', '/v1/machines/{name}/pause', 'machine name', fix, { reason: 'x' }],
    ['POST', '/v1/machines/{name}/resume', 'machine name'],
    ['POST', '/v1/machines/{name}/test-failover', 'machine name', fix, { point: 'latest' }],
    ['POST', '/v1/machines/{name}/test-failover/cleanup', 'machine name'],
    ['POST', '/v1/machines/{name}/failover', 'machine name', fix, { point: 'latest' }],
    ['POST', '/v1/machines/{name}/failover/commit', 'machine name'],
    ['POST', '/v1/machines/{name}/failover/change-point', 'machine name', fix, { point: 'latest' }],
    ['POST', '/v1/machines/{name}/reprotect', 'machine name'],
    ['GET', '/v1/machines/{name}/reprotect', 'machine name'],
    ['POST', '/v1/machines/{name}/reprotect/stop', 'machine name'],
    ['POST', '/v1/machines/{name}/failback', 'machine name'],
    ['POST', '/v1/machines/{name}/reenable', 'machine name'],
    ['POST', '/v1/machines/{name}/protect', 'machine name'],
    ['POST', '/v1/machines/{name}/unprotect', 'machine name'],
    ['GET', '/v1/jobs/{workflowId}', 'job id', JOB],
    ['GET', '/v1/plans/{name}', 'plan name'],
    ['POST', '/v1/plans/{name}/test-failover', 'plan name', fix, { point: 'latest' }],
    ['POST', '/v1/plans/{name}/test-failover/cleanup', 'plan name'],
    ['POST', '/v1/plans/{name}/failover', 'plan name', fix, { planned: true }],
    ['POST', '/v1/plans/{name}/reprotect', 'plan name'],
    ['POST', '/v1/plans/{name}/failback', 'plan name'],
    ['POST', '/v1/plans/{name}/reenable', 'plan name'],
    ['POST', '/v1/plan-jobs/{job}/commit', 'job id', JOB],
    ['POST', '/v1/plan-jobs/{job}/approve', 'job id', JOB, { action: 'a1' }],
    ['GET', '/v1/groups/{name}', 'group name'],
    ['GET', '/v1/groups/{name}/points', 'group name'],
    ['POST', '/v1/groups/{name}/points', 'group name'],
    ['POST', '/v1/groups/{name}/delete', 'group name'],
    ['POST', '/v1/tokens/{name}/revoke', 'identity name'],
    ['POST', '/v1/approvals/{id}/approve', 'job id', JOB],
    ['POST', '/v1/approvals/{id}/reject', 'job id', JOB],
    ['GET', '/v1/machines/{name}/recovery-settings', 'machine name'],
    ['POST', '/v1/machines/{name}/recovery-settings', 'machine name', fix, { target: 'local' }],
    ['GET', '/v1/hosts/{name}', 'host name'],
    ['POST', '/v1/hosts/{name}/remove', 'host name'],
    ['POST', '/v1/hosts/{name}/protect', 'host name', fix, { machine: 'm1' }],
    ['GET', '/v1/agents/{id}', 'agent id', AGENT],
    ['POST', '/v1/agents/{id}/protect', 'agent id', AGENT, { as: 'm-agent' }],
    ['POST', '/v1/agents/{id}/upgrade', 'agent id', AGENT],
    ['POST', '/v1/agents/{id}/resume', 'agent id', AGENT],
    ['GET', '/v1/sites/{site}', 'site name', SITE],
    ['POST', '/v1/sites/{site}/bandwidth-limit', 'site name', SITE, { bandwidthLimit: '1Mbit' }],
  ];
  // The table is every route with a name in its path: a new route must join it.
  assert.deepEqual(
    apiRoutes
      .filter((r) => r.path.includes('{'))
      .map((r) => `${r.method} ${r.path}`)
      .sort(),
    pathRoutes.map(([m, p]) => `${m} ${p}`).sort(),
  );
  // Names in bodies (% stands for the bad name): a new policy, plan or group, its machines, a
  // point, a drill. The last element: the part refused, when not the whole bad name.
  const bodyRoutes: Array<[string, string, string, unknown, string?]> = [
    ['POST', '/v1/policies', 'policy name', { name: '%' }],
    ['POST', '/v1/plans', 'plan name', { name: '%', groups: [{ machines: ['bi1'] }] }],
    ['POST', '/v1/plans', 'machine name', { name: 'p-names', groups: [{ machines: ['%'] }] }],
    ['POST', '/v1/groups', 'group name', { name: '%', machines: ['bi1', 'bi2'] }],
    ['POST', '/v1/groups', 'machine name', { name: 'g-names', machines: ['bi1', '%'] }],
    ['POST', '/v1/machines/bi1/test-failover', 'point', { point: '%' }],
    ['POST', '/v1/machines/bi1/test-failover', 'group name', { point: 'group:%' }, '..'],
    ['POST', '/v1/machines/bi1/failover', 'point', { point: '%' }],
    ['POST', '/v1/machines/bi1/failover/change-point', 'point', { point: '%' }],
    ['POST', '/v1/plans/p-names/test-failover', 'point', { point: '%' }],
    ['POST', '/v1/plans/p-names/test-failover/cleanup', 'job id', { drill: '%' }],
    ['POST', '/v1/tokens', 'identity name', { name: '%', role: 'viewer' }],
    ['POST', '/v1/agents/ag-0123456789ab/protect', 'machine name', { as: '%' }],
  ];

  const token = 'a-token-of-sixteen-chars';
  const api = await startApiServer({
    config: withoutRateLimit(stack.config),
    token,
    host: '127.0.0.1',
    port: 0,
    ctx,
    logger: createLogger('bad-input-names', 'silent'),
  });
  try {
    const call = async (method: string, url: string, body?: unknown) => {
      const res = await fetch(`${api.url}${url}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return {
        status: res.status,
        body: (await res.json()) as { error?: { code: string; message: string } },
      };
    };
    for (const bad of ['../policies/demo', '../../etc']) {
      for (const [method, template, noun, rest, body] of pathRoutes) {
        const url = template.replace(/\{\w+\}/, encodeURIComponent(bad));
        const reply = await call(method, url, body);
        assert.equal(reply.status, 400, `${method} ${url}: ${JSON.stringify(reply.body)}`);
        assert.equal(reply.body.error?.code, 'invalid', `${method} ${url}`);
        assert.match(reply.body.error?.message ?? '', named(noun, bad, rest ?? fix), `${method} ${url}`);
      }
      for (const [method, url, noun, body, part] of bodyRoutes) {
        const withBad = JSON.parse(JSON.stringify(body).replaceAll('%', bad)) as unknown;
        const reply = await call(method, url, withBad);
        const where = `${method} ${url} ${JSON.stringify(withBad)}`;
        assert.equal(reply.status, 400, `${where}: ${JSON.stringify(reply.body)}`);
        const rest = noun === 'point' ? POINT : noun === 'job id' ? JOB : fix;
        assert.match(reply.body.error?.message ?? '', named(noun, part ?? bad, rest), where);
      }
    }
  } finally {
    await api.close();
  }

  // Every CLI command that takes a name: [arguments (N: the bad name), noun, the part refused].
  const N = '../policies/demo';
  const out = path.join(scratch, 'names.raw');
  const commands: Array<[string[], string, string?]> = [
    [['protect', N, '--qmp', vm.daemon.qmpSocket], 'machine name'],
    [['protect', 'names1', '--qmp', vm.daemon.qmpSocket, '--policy', N], 'policy name'],
    [['status', N, '--no-follow'], 'machine name'],
    [['points', N], 'machine name'],
    [['point', N], 'machine name'],
    [['export', N, '--point', 'latest', '--out', out], 'machine name'],
    [['export', 'bi1', '--point', N, '--out', out], 'point'],
    [['export', 'bi1', '--point', `group:${N}`, '--out', out], 'group name', '..'],
    [['resync', N], 'machine name'],
    [['pause', N], 'machine name'],
    [['resume', N], 'machine name'],
    [['set-policy', N, 'manual'], 'machine name'],
    [['set-policy', 'bi1', N], 'policy name'],
    [['unprotect', N], 'machine name'],
    [['policy', 'create', N], 'policy name'],
    [['failover', 'test', N], 'machine name'],
    [['failover', 'test', 'bi1', '--point', N], 'point'],
    [['failover', 'cleanup', N], 'job id'],
    [['failover', 'start', N], 'machine name'],
    [['failover', 'start', 'bi1', '--point', N], 'point'],
    [['failover', 'commit', N], 'machine name'],
    [['failover', 'change-point', N, '--point', 'latest'], 'machine name'],
    [['failover', 'change-point', 'bi1', '--point', N], 'point'],
    [['failover', 'status', N], 'job id'],
    [['failover', 'configure', N, '--materialize', 'qcow2'], 'machine name'],
    [['plan', 'create', N, '--group', 'bi1'], 'plan name'],
    [['plan', 'create', 'p-names', '--group', `bi1,${N}`], 'machine name'],
    [['plan', 'show', N], 'plan name'],
    [['plan', 'test-failover', N], 'plan name'],
    [['plan', 'test-failover', 'p-names', '--point', N], 'point'],
    [['plan', 'cleanup', N], 'plan name'],
    [['plan', 'cleanup', 'p-names', '--drill', N], 'job id'],
    [['plan', 'failover', N], 'plan name'],
    [['plan', 'commit', N], 'job id'],
    [['plan', 'status', N], 'job id'],
    [['plan', 'reprotect', N], 'plan name'],
    [['plan', 'failback', N], 'plan name'],
    [['plan', 'reenable', N], 'plan name'],
    [['approve', N, 'a1'], 'job id'],
    [['group', 'create', N, '--machines', 'bi1,bi2'], 'group name'],
    [['group', 'create', 'g-names', '--machines', `bi1,${N}`], 'machine name'],
    [['group', 'show', N], 'group name'],
    [['group', 'points', N], 'group name'],
    [['group', 'point', N], 'group name'],
    [['group', 'set-interval', N, '60'], 'group name'],
    [['group', 'delete', N], 'group name'],
    [['reprotect', N], 'machine name'],
    [['reprotect-status', N], 'machine name'],
    [['reprotect-stop', N], 'machine name'],
    [['failback', N], 'machine name'],
    [['reenable', N], 'machine name'],
    [['failback-status', N], 'job id'],
    [['demo', 'start', '--name', N], 'machine name'],
    [['tokens', 'create', N, '--role', 'viewer'], 'identity name'],
    [['tokens', 'revoke', N], 'identity name'],
    [['approve', N], 'job id'],
    [['reject', N], 'job id'],
    [['host', 'add', N, '--sockets', '/tmp'], 'host name'],
    [['host', 'show', N], 'host name'],
    [['host', 'remove', N], 'host name'],
    [['discover', '--host', N], 'host name'],
    [['protect', 'm-names', '--qmp', '/tmp/x.qmp', '--host', N], 'host name'],
    [['agent', 'show', N], 'agent id'],
    [['agent', 'uninstall', N], 'agent id'],
    [['agent', 'upgrade', N], 'agent id'],
    [['agent', 'resume', N], 'agent id'],
    [['protect', 'm-names', '--agent', N], 'agent id'],
    [['site', 'show', N], 'site name'],
    [['site', 'limit', '1Mbit', '--site', N], 'site name'],
  ];
  // A few at a time: each is a process of its own.
  for (let i = 0; i < commands.length; i += 4) {
    await Promise.all(
      commands.slice(i, i + 4).map(async ([args, noun, part]) => {
        const res = await osr(args);
        const rest = { point: POINT, 'job id': JOB, 'agent id': AGENT, 'site name': SITE }[noun] ?? fix;
        assert.equal(res.code, 2, `osr ${args.join(' ')}: exit ${res.code}; stderr: ${res.stderr}`);
        assert.match(res.stderr, named(noun, part ?? N, rest), `osr ${args.join(' ')}`);
        assert.doesNotMatch(res.stderr, /\n\s+at |\.js:\d+:\d+/, 'no stack trace');
      }),
    );
  }

  // Nothing was written: no document but the audit entries of the refusals, no failover disk,
  // no export, no demo folder, no workflow; bi1 kept its policy.
  const added = (await blobs(CONTAINERS.vault)).filter((n) => !vaultBefore.includes(n));
  assert.deepEqual(
    added.filter((n) => !n.startsWith('audit/')),
    [],
    'no document but audit entries was written',
  );
  for (const name of added) {
    const entry = (await ctx.vault.read<AuditEntry>(name))?.value;
    assert.equal(entry?.outcome, 'refused', `${name}: ${JSON.stringify(entry)}`);
    assert.equal(entry?.code, 'invalid', name);
  }
  assert.ok(added.length > 0, 'the refused changes are in the audit log');
  assert.deepEqual(await blobs(CONTAINERS.failover), failoverBefore);
  assert.equal(fs.existsSync(out), false, 'no export file');
  assert.equal(fs.existsSync(path.join(stack.config.stateDir, 'policies')), false, 'no demo folder');
  assert.equal((await ctx.vault.machine('bi1'))?.policy, policyOfBi1);
  assert.deepEqual(
    [...(await workflows())].filter((id) => !workflowsBefore.has(id)),
    [],
    'no workflow was started',
  );
});
