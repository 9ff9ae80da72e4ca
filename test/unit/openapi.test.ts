// The OpenAPI document and the router must describe the same API: every route the server answers
// is documented, and every documented operation is answered.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accessOf } from '../../api/access';
import { openApiDocument } from '../../api/openapi';
import { Router } from '../../api/router';
import { routes } from '../../api/routes';

const key = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

test('every route is in the OpenAPI document and every documented operation is a route', () => {
  const fromRouter = routes.map((r) => key(r.method, r.path)).sort();
  const fromDocument = Object.entries(openApiDocument.paths)
    .flatMap(([path, ops]) => Object.keys(ops).map((method) => key(method, path)))
    .sort();
  assert.deepEqual(fromDocument, fromRouter);
  assert.equal(new Set(fromRouter).size, fromRouter.length, 'no route is declared twice');
});

test('the document marks exactly the unauthenticated routes as needing no security', () => {
  for (const route of routes) {
    const op = openApiDocument.paths[route.path]?.[route.method.toLowerCase() as 'get' | 'post'];
    assert.ok(op, key(route.method, route.path));
    assert.equal(
      op.security?.length === 0,
      accessOf(route.method, route.path) === 'public',
      `${key(route.method, route.path)} security`,
    );
  }
});

test('path parameters in the document match the templates, and every $ref resolves', () => {
  for (const [path, ops] of Object.entries(openApiDocument.paths)) {
    const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const op of Object.values(ops)) {
      const declared = (op.parameters ?? [])
        .filter((p) => p.in === 'path')
        .map((p) => p.name)
        .sort();
      assert.deepEqual(declared, names, `${path} ${op.operationId}`);
    }
  }
  const refs = [...JSON.stringify(openApiDocument).matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)];
  for (const [, name] of refs)
    assert.ok(openApiDocument.components.schemas[name as string], `schema ${name} is defined`);
  const ids = Object.values(openApiDocument.paths).flatMap((ops) =>
    Object.values(ops).map((o) => o.operationId),
  );
  assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
});

test('the router matches templates, decodes %2F in a parameter, and answers 404 and 405', () => {
  const router = new Router(routes);
  const m = router.match('GET', '/v1/jobs/drill%2Fweb-1%2F20261125T071800000Z');
  assert.equal(m.route.path, '/v1/jobs/{workflowId}');
  assert.equal(m.params.workflowId, 'drill/web-1/20261125T071800000Z');
  assert.equal(router.match('POST', '/v1/machines/web-1/failover/commit').params.name, 'web-1');
  assert.throws(
    () => router.match('GET', '/v1/nothing'),
    (e: { status?: number }) => e.status === 404,
  );
  assert.throws(
    () => router.match('DELETE', '/v1/machines'),
    (e: { status?: number; headers?: Record<string, string> }) =>
      e.status === 405 && e.headers?.Allow === 'GET',
  );
});
