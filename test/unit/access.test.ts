// The access table is the one place a route's role is named: every route is in it, nothing else is,
// a router refuses a route it lacks, and the OpenAPI document shows each operation's role. And the
// per-identity rate limiter's arithmetic, on a clock the test moves.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accessOf, checkAccessTable, ROUTE_ACCESS, routeKey } from '../../api/access';
import { openApiDocument } from '../../api/openapi';
import { RateLimiter } from '../../api/rate-limit';
import { Router, type Route } from '../../api/router';
import { routes } from '../../api/routes';

test('every route has a role in the table, and every table entry is a route', () => {
  for (const r of routes) assert.ok(accessOf(r.method, r.path), `${routeKey(r.method, r.path)} has no role`);
  const keys = new Set(routes.map((r) => routeKey(r.method, r.path)));
  for (const key of Object.keys(ROUTE_ACCESS)) {
    if (key === 'GET /dashboard/*') continue;
    assert.ok(keys.has(key), `${key} is in the table but no route`);
  }
  // Every write is at least an operator's; nothing but a read is a viewer's.
  for (const r of routes)
    if (r.method === 'POST')
      assert.notEqual(accessOf(r.method, r.path), 'viewer', routeKey(r.method, r.path));
});

test('a router is not built with a route the table lacks', () => {
  const stray: Route = {
    method: 'POST',
    path: '/v1/hosts/{name}/forget',
    handler: () => ({ status: 200, body: {} }),
  };
  assert.throws(() => new Router([...routes, stray]), /POST \/v1\/hosts\/\{name\}\/forget/);
  assert.doesNotThrow(() => checkAccessTable(routes));
});

test("the OpenAPI document names each operation's role and its 403/413/429", () => {
  for (const r of routes) {
    const op = openApiDocument.paths[r.path]?.[r.method.toLowerCase() as 'get' | 'post'] as
      | (Record<string, unknown> & { responses: Record<string, unknown> })
      | undefined;
    assert.ok(op, routeKey(r.method, r.path));
    const access = accessOf(r.method, r.path);
    if (access === 'public') {
      assert.equal(op['x-osr-role'], undefined);
      continue;
    }
    assert.equal(op['x-osr-role'], access, routeKey(r.method, r.path));
    assert.ok(op.responses['403'], `${routeKey(r.method, r.path)} 403`);
    if (r.method === 'POST') {
      assert.ok(op.responses['413'] && op.responses['429'], `${routeKey(r.method, r.path)} 413/429`);
    }
  }
});

test('the rate limiter allows a burst, then one request per refill interval, with Retry-After', () => {
  let now = 0;
  const limiter = new RateLimiter({ perMinute: 6, burst: 3 }, () => now);
  for (let i = 0; i < 3; i++) limiter.take('alice');
  const refuse = () => {
    try {
      limiter.take('alice');
    } catch (err) {
      return err as { status: number; headers: Record<string, string>; message: string };
    }
    return undefined;
  };
  const refused = refuse();
  assert.equal(refused?.status, 429);
  assert.equal(refused?.headers['Retry-After'], '10');
  assert.match(refused?.message ?? '', /api\.rateLimit/);
  limiter.take('bob'); // another identity has its own bucket
  now = 9_500;
  assert.equal(refuse()?.headers['Retry-After'], '1');
  // 20 s refill two requests (6 a minute), not more.
  now = 20_000;
  limiter.take('alice');
  limiter.take('alice');
  assert.equal(refuse()?.status, 429);
});
