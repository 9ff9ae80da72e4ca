// `osr serve`'s HTTP API against the real stack: auth, machines, points, policies, a drill and its
// cleanup, a failover with its commit, and the refusals (400, 401, 404, 409, 413).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startApiServer, type ApiServer } from '../../api/server';
import { routes } from '../../api/routes';
import * as machines from '../../operations/machines';
import { startTestApi } from '../helpers/api-client';
import { waitForStatus } from '../helpers/protection';
import { pseudoRandom, startTestMachine, type TestMachine } from '../helpers/qemu-machine';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
const M = 'api-vm1';
const token = randomBytes(32).toString('base64url');
let bed: Testbed;
let vm: TestMachine;
let api: ApiServer;

before(async () => {
  bed = await startTestbed();
  vm = await startTestMachine({ sizes: [32 * MiB] });
  await machines.protect(bed.ctx, {
    name: M,
    qmpSocket: vm.daemon.qmpSocket,
    nbdSocket: vm.daemon.nbdSocket,
    policy: 'manual',
  });
  await waitForStatus(bed.ctx, M, (s) => s.state === 'protected');
  const disk = await vm.disk();
  await disk.write(0, pseudoRandom(2 * MiB, 7));
  await disk.flush();
  api = await startTestApi(bed, token, 'api-test');
});

after(async () => {
  await api?.close();
  await vm?.stop();
  await bed?.stop();
});

interface Reply {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

async function call(
  method: string,
  path: string,
  options: { body?: unknown; raw?: string; auth?: string | null } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (options.auth !== null) headers.authorization = options.auth ?? `Bearer ${token}`;
  const payload = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${api.url}${path}`, { method, headers, body: payload });
  const text = await res.text();
  assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8', `${method} ${path}`);
  return { status: res.status, headers: res.headers, body: JSON.parse(text) };
}

/** An error reply: its status, and a message without internals. */
function assertError(reply: Reply, status: number, message: RegExp): void {
  assert.equal(reply.status, status, JSON.stringify(reply.body));
  assert.match(reply.body.error.message, message);
  assert.doesNotMatch(JSON.stringify(reply.body), /\n\s+at |\.js:\d+/, 'no stack trace');
}

/** Polls a job until `until` holds for its progress. */
async function waitForJob(location: string, until: (progress: { state?: string }) => boolean) {
  const deadline = Date.now() + 120_000;
  let last: Reply | undefined;
  while (Date.now() < deadline) {
    last = await call('GET', location);
    assert.equal(last.status, 200, JSON.stringify(last.body));
    if (last.body.progress && until(last.body.progress)) return last.body;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out on ${location}: ${JSON.stringify(last?.body)}`);
}

test('healthz and the OpenAPI document need no token; the document names every route', async () => {
  assert.deepEqual((await call('GET', '/healthz', { auth: null })).body, { ok: true });
  const doc = await call('GET', '/openapi.json', { auth: null });
  assert.equal(doc.status, 200);
  assert.equal(doc.body.openapi, '3.1.0');
  for (const route of routes)
    assert.ok(doc.body.paths[route.path]?.[route.method.toLowerCase()], `${route.method} ${route.path}`);
});

test('401 without a token and with a wrong one, with WWW-Authenticate and a JSON error', async () => {
  const none = await call('GET', '/v1/machines', { auth: null });
  assertError(none, 401, /Authorization: Bearer/);
  assert.equal(none.body.error.code, 'unauthorized');
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer realm="osr"/);
  const wrong = await call('GET', '/v1/machines', { auth: `Bearer ${token.slice(0, -1)}x` });
  assertError(wrong, 401, /not valid/);
  assert.match(wrong.headers.get('www-authenticate') ?? '', /invalid_token/);
  assertError(await call('GET', '/v1/machines', { auth: `Basic ${token}` }), 401, /Bearer/);
  // A refused request does not reach the operation: nothing was cut.
  const before = (await bed.ctx.vault.points(M)).length;
  assertError(await call('POST', `/v1/machines/${M}/points`, { auth: null, body: {} }), 401, /Bearer/);
  assertError(
    await call('POST', `/v1/machines/${M}/points`, { auth: 'Bearer x', body: {} }),
    401,
    /not valid/,
  );
  assert.equal((await bed.ctx.vault.points(M)).length, before);
});

test('machines, status, a point cut now and listed, pause and resume', async () => {
  const list = await call('GET', '/v1/machines');
  assert.equal(list.status, 200);
  const mine = list.body.machines.find((m: { machine: string }) => m.machine === M);
  assert.equal(mine?.status?.state, 'protected');

  const status = await call('GET', `/v1/machines/${M}`);
  assert.equal(status.status, 200);
  assert.equal(status.body.machine, M);
  assert.equal(status.body.policy.name, 'manual');

  const cut = await call('POST', `/v1/machines/${M}/points`, { body: { kind: 'crash', tag: 'api-test' } });
  assert.equal(cut.status, 201, JSON.stringify(cut.body));
  assert.equal(cut.body.kind, 'crash');
  const points = await call('GET', `/v1/machines/${M}/points`);
  assert.equal(points.status, 200);
  const listed = points.body.points.find((p: { id: string }) => p.id === cut.body.id);
  assert.ok(listed, 'the new point is listed');
  assert.equal(listed.tag, 'api-test');

  const paused = await call('POST', `/v1/machines/${M}/pause`, { body: { reason: 'api test' } });
  assert.equal(paused.status, 200, JSON.stringify(paused.body));
  assert.equal(paused.body.state, 'paused');
  const resumed = await call('POST', `/v1/machines/${M}/resume`);
  assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
  assert.notEqual(resumed.body.state, 'paused');

  const jobs = await call('GET', `/v1/jobs?machine=${M}&kind=protect`);
  assert.equal(jobs.status, 200);
  assert.deepEqual(
    jobs.body.jobs.map((j: { workflowId: string; kind: string }) => [j.workflowId, j.kind]),
    [[`protect/${M}`, 'protect']],
  );
  const job = await call('GET', `/v1/jobs/${encodeURIComponent(`protect/${M}`)}`);
  assert.equal(job.status, 200);
  assert.equal(job.body.progress.machine, M);
});

test('protect again by name a machine whose protection ended outside OSR; points kept', async () => {
  assertError(await call('POST', `/v1/machines/${M}/protect`), 409, /already/);
  const before = await call('GET', `/v1/machines/${M}/points`);
  assert.ok(before.body.points.length > 0);
  // As after a lost Temporal or a terminate by hand: the vault still knows the machine.
  await bed.stack.client.workflow.getHandle(`protect/${M}`).terminate('api test');
  assertError(await call('POST', `/v1/machines/${M}/protect`, { body: { qmp: '/x' } }), 400, /qmp/);
  const again = await call('POST', `/v1/machines/${M}/protect`);
  assert.equal(again.status, 202, JSON.stringify(again.body));
  assert.equal(again.body.workflowId, `protect/${M}`);
  assert.equal(again.headers.get('location'), again.body.location);
  await waitForStatus(bed.ctx, M, (s) => s.state === 'protected');
  const after = await call('GET', `/v1/machines/${M}/points`);
  assert.deepEqual(
    after.body.points.map((p: { id: string }) => p.id).slice(0, before.body.points.length),
    before.body.points.map((p: { id: string }) => p.id),
    'the points cut before are still there',
  );
  assertError(await call('POST', '/v1/machines/nope/protect'), 404, /no protected machine named nope/);
});

test('unprotect by name: protection ends and the machine is no longer listed', async () => {
  const other = await startTestMachine({ sizes: [8 * MiB] });
  try {
    await machines.protect(bed.ctx, {
      name: 'api-vm2',
      qmpSocket: other.daemon.qmpSocket,
      nbdSocket: other.daemon.nbdSocket,
      policy: 'manual',
    });
    await waitForStatus(bed.ctx, 'api-vm2', (s) => s.state === 'protected');
    assertError(
      await call('POST', '/v1/machines/api-vm2/unprotect', { body: { keepReplica: 'yes' } }),
      400,
      /keepReplica/,
    );
    const ended = await call('POST', '/v1/machines/api-vm2/unprotect', { body: { keepReplica: false } });
    assert.equal(ended.status, 200, JSON.stringify(ended.body));
    const list = await call('GET', '/v1/machines');
    assert.deepEqual(
      list.body.machines.map((m: { machine: string }) => m.machine),
      [M],
    );
    const described = await bed.stack.client.workflow.getHandle('protect/api-vm2').describe();
    assert.equal(described.status.name, 'COMPLETED');
  } finally {
    await other.stop();
  }
});

test('404 for an unknown machine, route or job', async () => {
  assertError(await call('GET', '/v1/machines/nope'), 404, /no protected machine named nope; known: api-vm1/);
  assertError(await call('GET', '/v1/machines/nope/points'), 404, /no protected machine named nope/);
  assertError(await call('POST', '/v1/machines/nope/test-failover', { body: {} }), 404, /nope/);
  assertError(await call('GET', '/v1/nothing'), 404, /no route/);
  assertError(await call('GET', `/v1/jobs/${encodeURIComponent('drill/nope/1')}`), 404, /no OSR job/);
  assertError(await call('DELETE', '/v1/machines'), 405, /use GET/);
});

test('400 for bad JSON and bad fields, naming the field; 413 for a body too large', async () => {
  assertError(await call('POST', `/v1/machines/${M}/points`, { raw: '{"kind": ' }), 400, /not valid JSON/);
  assertError(await call('POST', `/v1/machines/${M}/points`, { raw: '[1]' }), 400, /JSON object/);
  assertError(
    await call('POST', `/v1/machines/${M}/points`, { body: { kind: 'bogus' } }),
    400,
    /field "kind": must be one of "crash", "app"/,
  );
  assertError(
    await call('POST', `/v1/machines/${M}/test-failover`, { body: { pont: 'latest' } }),
    400,
    /field "pont": unknown field; this route accepts "point"/,
  );
  assertError(
    await call('POST', `/v1/machines/${M}/failover`, { body: { planned: 'yes' } }),
    400,
    /field "planned": must be true or false/,
  );
  assertError(
    await call('POST', '/v1/policies', { body: { name: 'p1', rpo: 'soon' } }),
    400,
    /field "rpo": .*"5m"/,
  );
  assertError(await call('POST', '/v1/policies', { body: {} }), 400, /field "name": missing/);
  assertError(
    await call('POST', `/v1/machines/${M}/points`, { raw: JSON.stringify({ tag: 'x'.repeat(70 * 1024) }) }),
    413,
    /larger than/,
  );
});

test('policies: list, create, and 409 for a name in use', async () => {
  const created = await call('POST', '/v1/policies', {
    body: { name: 'silver', rpo: '10m', crashEvery: 60 },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.rpoThresholdSeconds, 600);
  assert.equal(created.body.crashPointSeconds, 60);
  const list = await call('GET', '/v1/policies');
  assert.deepEqual(list.body.policies.map((p: { name: string }) => p.name).sort(), [
    'default',
    'manual',
    'silver',
  ]);
  assertError(await call('POST', '/v1/policies', { body: { name: 'silver' } }), 409, /already exists/);
});

test('a drill and its cleanup through the API, followed under /v1/jobs', async () => {
  const started = await call('POST', `/v1/machines/${M}/test-failover`, { body: { point: 'latest' } });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  assert.match(started.body.workflowId, new RegExp(`^drill/${M}/`));
  assert.equal(started.headers.get('location'), started.body.location);
  const drill = await waitForJob(started.body.location, (p) => p.state !== 'running');
  assert.equal(drill.progress.state, 'ready', JSON.stringify(drill.progress));
  assert.equal(drill.kind, 'drill');
  assert.equal(drill.machine, M);
  assert.ok(drill.progress.disks.length > 0, 'the drill made disks');

  const cleanup = await call('POST', `/v1/machines/${M}/test-failover/cleanup`);
  assert.equal(cleanup.status, 202, JSON.stringify(cleanup.body));
  assert.equal(cleanup.body.jobs.length, 1);
  const done = await waitForJob(cleanup.body.jobs[0].location, (p) => p.state !== 'running');
  assert.equal(done.progress.state, 'cleaned-up', JSON.stringify(done.progress));
});

test('failover: a second one is a 409, change-point needs a point, commit ends it', async () => {
  const started = await call('POST', `/v1/machines/${M}/failover`, { body: { point: 'latest' } });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  assertError(
    await call('POST', `/v1/machines/${M}/failover`, { body: {} }),
    409,
    new RegExp(`already running: failover/${M}/`),
  );
  const running = await call('GET', '/v1/jobs?kind=failover');
  assert.deepEqual(
    running.body.jobs.map((j: { workflowId: string }) => j.workflowId),
    [started.body.workflowId],
  );
  const job = await waitForJob(started.body.location, (p) => p.state !== 'running');
  assert.equal(job.progress.state, 'failed-over', JSON.stringify(job.progress));
  assertError(
    await call('POST', `/v1/machines/${M}/failover/change-point`, { body: {} }),
    400,
    /field "point": missing/,
  );
  const committed = await call('POST', `/v1/machines/${M}/failover/commit`);
  assert.equal(committed.status, 200, JSON.stringify(committed.body));
  assert.equal(committed.body.state, 'committed');
  assertError(await call('POST', `/v1/machines/${M}/failover/commit`), 404, /already committed/);
});

test('with api.tls the API speaks HTTPS and still asks for the token', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-api-tls-'));
  const [certPath, keyPath] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'ignore' },
  );
  const config = { ...bed.stack.config, api: { ...bed.stack.config.api, tls: { certPath, keyPath } } };
  const secure = await startApiServer({ config, token, host: '127.0.0.1', port: 0, ctx: bed.ctx });
  try {
    assert.match(secure.url, /^https:\/\//);
    const get = (p: string, auth?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.get(
          `${secure.url}${p}`,
          { ca: fs.readFileSync(certPath), headers: auth ? { authorization: auth } : {} },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
      });
    assert.equal((await get('/v1/policies')).status, 401);
    const ok = await get('/v1/policies', `Bearer ${token}`);
    assert.equal(ok.status, 200);
    assert.ok(JSON.parse(ok.body).policies.length > 0);
  } finally {
    await secure.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
