// Who may do what, against the real API server, Temporal dev server and Azurite: every route in the
// router walked with each role (and none) gets exactly what api/access.ts says (403 naming the
// role needed and the one held, or through to the operation); tokens are hashed at rest, listed
// without secrets, revoked and expired at once; the audit log names the identity; changing routes
// are rate-limited per identity; bodies are bounded; no error repeats a secret.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { accessOf } from '../../api/access';
import { routes } from '../../api/routes';
import { startApiServer, type ApiServer } from '../../api/server';
import { createLogger } from '../../lib/config/logger';
import { listAudit, runAs, cliActor } from '../../operations/audit';
import { ControlContext } from '../../operations/context';
import { createToken, tokenDoc } from '../../operations/tokens';
import { ROLES, type Role } from '../../shared/roles';
import { runCli } from '../helpers/cli';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const LEGACY = 'legacy-token-of-an-earlier-release-0123456789';
let stack: TestStack;
let ctx: ControlContext;
let api: ApiServer;
const secrets = {} as Record<Role, string>;

function startApi(config = stack.config, server: { ctx?: ControlContext } = { ctx }): Promise<ApiServer> {
  return startApiServer({
    config,
    token: LEGACY,
    host: '127.0.0.1',
    port: 0,
    ...server,
    logger: createLogger('access-test', 'silent'),
  });
}

before(async () => {
  stack = await startTestStack();
  ctx = new ControlContext(stack.config);
  await runAs(cliActor(), async () => {
    for (const role of ROLES) secrets[role] = (await createToken(ctx, { name: `${role}-1`, role })).secret;
  });
  // The walk sends many changing requests; the rate limit has its own test below.
  api = await startApi({
    ...stack.config,
    api: { ...stack.config.api, rateLimit: { perMinute: 1e5, burst: 1e5 } },
  });
});

after(async () => {
  await api?.close();
  await ctx?.close();
  await stack?.stop();
});

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

async function call(
  server: ApiServer,
  method: string,
  urlPath: string,
  token: string | undefined,
  payload?: string,
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${server.url}${urlPath}`, { method, headers, body: payload });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

/** A route's path with names of things that do not exist, so an allowed call ends in a domain answer. */
const concrete = (template: string) =>
  template.replace(/\{(\w+)\}/g, (_m, p: string) =>
    p === 'workflowId' ? 'drill%2Fno-such%2F1' : `no-such-${p}`,
  );

test('every route, walked with each role and with no token, is refused or served exactly as the table says', async () => {
  let refused = 0;
  let served = 0;
  for (const route of routes) {
    const needed = accessOf(route.method, route.path);
    assert.ok(needed, `${route.method} ${route.path} is missing from api/access.ts`);
    const urlPath = concrete(route.path);
    const payload = route.method === 'POST' ? '{}' : undefined;
    const what = `${route.method} ${route.path}`;
    const anonymous = await call(api, route.method, urlPath, undefined, payload);
    if (needed === 'public') {
      assert.equal(anonymous.status, 200, what);
      continue;
    }
    assert.equal(anonymous.status, 401, what);
    for (const role of ROLES) {
      const reply = await call(api, route.method, urlPath, secrets[role], payload);
      const allowed = ROLES.indexOf(role) >= ROLES.indexOf(needed);
      if (!allowed) {
        refused++;
        assert.equal(reply.status, 403, `${what} as ${role}: ${reply.text}`);
        assert.equal(reply.body.error.code, 'forbidden');
        assert.equal(
          reply.body.error.message,
          `${what} needs the ${needed} role; identity ${role}-1 holds ${role}`,
        );
        continue;
      }
      served++;
      // Through to the operation: a success, or its own refusal of the made-up names or empty body.
      assert.ok(
        (reply.status >= 200 && reply.status < 300) || [400, 404, 409].includes(reply.status),
        `${what} as ${role}: ${reply.status} ${reply.text}`,
      );
    }
  }
  assert.ok(refused > 20 && served > 60, `${refused} refused, ${served} served`);
  process.stdout.write(`# walk: ${refused} refused, ${served} served\n`);
});

test('GET /v1/me names the identity, its role and exactly the routes it may call', async () => {
  for (const role of ROLES) {
    const me = await call(api, 'GET', '/v1/me', secrets[role]);
    assert.equal(me.status, 200);
    assert.equal(me.body.name, `${role}-1`);
    assert.equal(me.body.role, role);
    const expected = routes
      .filter((r) => {
        const a = accessOf(r.method, r.path);
        return a !== 'public' && ROLES.indexOf(role) >= ROLES.indexOf(a as Role);
      })
      .map((r) => `${r.method} ${r.path}`)
      .sort();
    assert.deepEqual([...me.body.allowed].sort(), expected);
  }
  const legacy = await call(api, 'GET', '/v1/me', LEGACY);
  assert.deepEqual([legacy.body.name, legacy.body.role], ['legacy', 'admin']);
});

test('tokens are kept as salted scrypt hashes, listed without secrets, and the audit log names who acted', async () => {
  const stored = await ctx.vault.read<{ hash: { alg: string; salt: string; digest: string } }>(
    tokenDoc('admin-1'),
  );
  const raw = JSON.stringify(stored?.value);
  for (const s of Object.values(secrets))
    assert.ok(!raw.includes(s.split('.')[2] as string), 'no secret at rest');
  assert.equal(stored?.value.hash.alg, 'scrypt');
  const other = await ctx.vault.read<{ hash: { salt: string } }>(tokenDoc('viewer-1'));
  assert.notEqual(other?.value.hash.salt, stored?.value.hash.salt, 'a salt per token');

  const list = await call(api, 'GET', '/v1/tokens', secrets.admin);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.tokens.map((t: { name: string }) => t.name).sort(), [
    'admin-1',
    'operator-1',
    'viewer-1',
  ]);
  for (const s of Object.values(secrets)) assert.ok(!list.text.includes(s.split('.')[2] as string));

  const made = await call(
    api,
    'POST',
    '/v1/policies',
    secrets.admin,
    JSON.stringify({ name: 'by-admin', rpo: '10m' }),
  );
  assert.equal(made.status, 201, made.text);
  const [entry] = await listAudit(ctx, { action: 'policy.create', target: 'by-admin' });
  assert.equal(entry?.actor.via, 'api');
  assert.equal(entry?.actor.user, 'admin-1');
  assert.equal(entry?.actor.role, 'admin');
  // The tokens made through the CLI's operations name the OS user, as every CLI action does.
  const [made1] = await listAudit(ctx, { action: 'token.create', target: 'viewer-1' });
  assert.equal(made1?.actor.via, 'cli');
  // The last use is recorded (at most once a minute, in the background).
  const deadline = Date.now() + 20_000;
  let lastUsed: string | undefined;
  while (!lastUsed && Date.now() < deadline) {
    lastUsed = (await ctx.vault.read<{ lastUsedAt?: string }>(tokenDoc('admin-1')))?.value.lastUsedAt;
    if (!lastUsed) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(lastUsed && Date.parse(lastUsed) > Date.now() - 120_000, 'last used recorded');
});

test('osr tokens create prints the secret once; list shows name, role, dates and never it; revoke ends it at once', async () => {
  const created = await runCli(
    ['tokens', 'create', 'ci-bot', '--role', 'operator', '--expires', '90d', '--json'],
    stack.env,
  );
  assert.equal(created.code, 0, created.stderr);
  const token = JSON.parse(created.stdout) as { token: string; role: string; expiresAt: string };
  assert.equal(token.role, 'operator');
  assert.ok(Math.abs(Date.parse(token.expiresAt) - Date.now() - 90 * 86400_000) < 120_000);
  assert.equal((await call(api, 'GET', '/v1/me', token.token)).body.name, 'ci-bot');

  const listed = await runCli(['tokens', 'list'], stack.env);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /ci-bot\s+operator\s+\d{4}-\d\d-\d\d/);
  assert.ok(!listed.stdout.includes(token.token.split('.')[2] as string), 'the secret is never listed');
  const again = await runCli(['tokens', 'create', 'ci-bot', '--role', 'admin'], stack.env);
  assert.equal(again.code, 5, 'a live token is not replaced');
  assert.match(again.stderr, /revoke it first/);
  const bad = await runCli(['tokens', 'create', 'x', '--role', 'root'], stack.env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /viewer, operator, admin/);

  const revoked = await runCli(['tokens', 'revoke', 'ci-bot'], stack.env);
  assert.equal(revoked.code, 0, revoked.stderr);
  const after = await call(api, 'GET', '/v1/me', token.token);
  assert.equal(after.status, 401);
  assert.match(after.body.error.message, /revoked/);
  assert.match((await runCli(['tokens', 'list'], stack.env)).stdout, /ci-bot.*revoked/);
});

test('an expired token is refused; the legacy token works as admin until revoked', async () => {
  const { secret } = await runAs(cliActor(), () =>
    createToken(ctx, { name: 'short', role: 'viewer', expiresInSeconds: 60 }),
  );
  assert.equal((await call(api, 'GET', '/v1/me', secret)).status, 200);
  // Its expiry passes (the record says so; waiting the minute proves no more).
  await ctx.vault.update<{ expiresAt: string }>(tokenDoc('short'), (t) => ({
    ...(t as { expiresAt: string }),
    expiresAt: new Date(Date.now() - 1000).toISOString(),
  }));
  const expired = await call(api, 'GET', '/v1/me', secret);
  assert.equal(expired.status, 401);
  assert.match(expired.body.error.message, /expired/);

  assert.equal((await call(api, 'POST', '/v1/tokens/legacy/revoke', LEGACY, '{}')).status, 200);
  const gone = await call(api, 'GET', '/v1/me', LEGACY);
  assert.equal(gone.status, 401);
  assert.match(gone.body.error.message, /revoked/);
});

test('changing routes are rate-limited per identity (429, Retry-After); reads are not', async () => {
  const limited = await startApi({
    ...stack.config,
    api: { ...stack.config.api, rateLimit: { perMinute: 6, burst: 3 } },
  });
  try {
    const cut = (token: string) => call(limited, 'POST', '/v1/machines/no-such/points', token, '{}');
    for (let i = 0; i < 3; i++) assert.equal((await cut(secrets.operator)).status, 404);
    const over = await cut(secrets.operator);
    assert.equal(over.status, 429, over.text);
    const wait = Number(over.headers.get('retry-after'));
    assert.ok(wait >= 1 && wait <= 10, `Retry-After ${wait}`);
    assert.match(over.body.error.message, /api\.rateLimit/);
    assert.equal((await cut(secrets.admin)).status, 404, 'another identity has its own budget');
    for (let i = 0; i < 5; i++)
      assert.equal((await call(limited, 'GET', '/v1/machines', secrets.operator)).status, 200);
  } finally {
    await limited.close();
  }
});

test('a body over api.maxBodyBytes is refused with 413 naming the limit', async () => {
  const big = JSON.stringify({ tag: 'x'.repeat(stack.config.api.maxBodyBytes) });
  const reply = await call(api, 'POST', '/v1/machines/no-such/points', secrets.operator, big);
  assert.equal(reply.status, 413);
  assert.match(
    reply.body.error.message,
    new RegExp(`larger than ${stack.config.api.maxBodyBytes} bytes \\(api\\.maxBodyBytes\\)`),
  );
});

test('no error repeats a secret: tokens, the storage key, a SAS', async () => {
  const near = `${secrets.admin.slice(0, -1)}${secrets.admin.endsWith('A') ? 'B' : 'A'}`;
  const seen: Reply[] = [];
  seen.push(await call(api, 'GET', '/v1/machines', near));
  seen.push(await call(api, 'GET', `/v1/machines`, `${secrets.viewer}x`));
  seen.push(await call(api, 'POST', '/v1/policies', secrets.viewer, JSON.stringify({ name: 'x' })));
  seen.push(
    await call(
      api,
      'POST',
      '/v1/tokens',
      secrets.admin,
      JSON.stringify({ name: 'y', role: 'root', note: secrets.operator }),
    ),
  );
  for (const r of seen) {
    assert.ok(r.status >= 400, r.text);
    for (const s of [...Object.values(secrets), near, LEGACY])
      assert.ok(!r.text.includes(s.split('.').pop() as string), r.text);
  }
  // Storage that refuses the server's credentials: the answer names the fix, never the key or SAS.
  const key = Buffer.from('not-the-key-'.repeat(6)).toString('base64');
  const sas =
    'sv=2024-08-04&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&sig=c2VjcmV0LXNhcy1zaWduYXR1cmU%3D';
  const port = stack.config.storage.azuritePort;
  for (const connectionString of [
    `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${key};BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`,
    `BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;SharedAccessSignature=${sas}`,
  ]) {
    const config = { ...stack.config, storage: { ...stack.config.storage, connectionString } };
    const wrong = await startApi(config, {});
    try {
      const r = await call(wrong, 'GET', '/v1/me', LEGACY);
      assert.equal(r.status, 503, r.text);
      assert.match(r.body.error.message, /refused OSR's credentials/);
      for (const s of [key, 'c2VjcmV0LXNhcy1zaWduYXR1cmU', LEGACY]) assert.ok(!r.text.includes(s), r.text);
    } finally {
      await wrong.close();
    }
  }
});

test('the CLI help names the roles', async () => {
  const help = await runCli(['tokens', 'create', '--help'], stack.env);
  assert.match(help.stdout, /--role <role>.*viewer/s);
  assert.match(help.stdout, /--expires <duration>/);
});
