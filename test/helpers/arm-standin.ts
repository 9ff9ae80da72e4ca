// A stand-in for Azure Resource Manager, for the calls OSR makes and no others: GET, PUT, DELETE and
// list of managed disks, VMs (Microsoft.Compute) and NICs (Microsoft.Network) in one subscription.
// HTTPS with its own certificate (the ARM SDK sends bearer tokens only over HTTPS), the bearer token
// checked, the api-version each SDK sends checked (others refused with ARM's error shape),
// long-running PUT and DELETE answered 201/202 with Azure-AsyncOperation (InProgress, then
// Succeeded), and faults injectable at a chosen call: 409 Conflict, 429 with Retry-After, or a lost
// response (the resource is made, the connection is dropped before the answer).
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import {
  API_VERSIONS,
  ArmError,
  ResourceStore,
  resourceId,
  type ResourceType,
  type StoredResource,
} from './arm-standin-resources';
import { makeStandinCertificate } from './arm-standin-tls';

export type Fault =
  | { kind: 'conflict' }
  | { kind: 'throttle'; retryAfterSeconds: number }
  /** The request is carried out, then the connection is dropped: the caller never hears back. */
  | { kind: 'lost-response' };

export interface FaultRule {
  method: 'PUT' | 'DELETE' | 'GET';
  type: ResourceType;
  /** The n-th such call (1-based) from when the rule is added gets the fault. */
  nth: number;
  fault: Fault;
}

export interface RequestLog {
  method: string;
  path: string;
  apiVersion: string | null;
  status: number | 'dropped';
}

export interface ArmStandin {
  /** The ARM endpoint (https://127.0.0.1:<port>). */
  url: string;
  subscriptionId: string;
  caFile: string;
  tokenFile: string;
  store: ResourceStore;
  requests: RequestLog[];
  inject(rule: FaultRule): void;
  stop(): Promise<void>;
}

interface Operation {
  polls: number;
  finish: () => void;
  error?: ArmError;
}

const ROUTE =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/(Microsoft\.Compute|Microsoft\.Network)\/(disks|virtualMachines|networkInterfaces)(?:\/([^/]+))?$/i;

export async function startArmStandin(options: {
  dir: string;
  resourceGroups: string[];
}): Promise<ArmStandin> {
  const tls = makeStandinCertificate(options.dir);
  const token = randomBytes(24).toString('base64url');
  const tokenFile = path.join(options.dir, 'arm-token');
  fs.writeFileSync(tokenFile, token, { mode: 0o600 });
  const subscriptionId = randomUUID();
  const store = new ResourceStore();
  const requests: RequestLog[] = [];
  const operations = new Map<string, Operation>();
  const rules: (FaultRule & { seen: number })[] = [];
  let base = '';

  const send = (res: ServerResponse, log: RequestLog, status: number, body?: unknown, headers = {}) => {
    log.status = status;
    res.writeHead(status, {
      'content-type': 'application/json',
      'x-ms-request-id': randomUUID(),
      ...headers,
    });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const view = (r: StoredResource) => ({
    id: r.id,
    name: r.name,
    type: r.type,
    location: r.location,
    tags: r.tags,
    ...(r.sku ? { sku: r.sku } : {}),
    properties: r.properties,
  });
  /** A long-running operation: polled once InProgress, then it finishes. */
  const startOperation = (finish: () => void): string => {
    const id = randomUUID();
    operations.set(id, { polls: 0, finish });
    return `${base}/subscriptions/${subscriptionId}/providers/Microsoft.Standin/operations/${id}?api-version=standin`;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    const log: RequestLog = {
      method: req.method ?? '',
      path: url.pathname,
      apiVersion: url.searchParams.get('api-version'),
      status: 0,
    };
    requests.push(log);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.headers.authorization !== `Bearer ${token}`)
      return send(res, log, 401, {
        error: {
          code: 'AuthenticationFailed',
          message: 'Authentication failed. The bearer token is missing or invalid.',
        },
      });
    const op = /\/providers\/Microsoft\.Standin\/operations\/([^/]+)$/.exec(url.pathname);
    if (op) {
      const o = operations.get(op[1] ?? '');
      if (!o) return send(res, log, 404, { error: { code: 'NotFound', message: 'no such operation' } });
      if (o.polls++ === 0) return send(res, log, 200, { status: 'InProgress' });
      o.finish();
      return send(res, log, 200, { status: 'Succeeded' });
    }
    const m = ROUTE.exec(url.pathname);
    if (!m)
      return send(res, log, 404, {
        error: {
          code: 'InvalidResourceType',
          message: `The stand-in does not serve ${req.method} ${url.pathname}.`,
        },
      });
    const [, sub, rg, , typeRaw, name] = m;
    const type = Object.keys(API_VERSIONS).find(
      (t) => t.toLowerCase() === typeRaw?.toLowerCase(),
    ) as ResourceType;
    const wanted = API_VERSIONS[type];
    if (log.apiVersion !== wanted)
      return send(res, log, 400, {
        error: {
          code: log.apiVersion ? 'InvalidApiVersionParameter' : 'MissingApiVersionParameter',
          message: `The api-version '${log.apiVersion ?? ''}' is invalid. The supported versions are '${wanted}'.`,
        },
      });
    if (sub !== subscriptionId)
      return send(res, log, 404, {
        error: { code: 'SubscriptionNotFound', message: `The subscription '${sub}' could not be found.` },
      });
    if (!options.resourceGroups.some((g) => g.toLowerCase() === rg?.toLowerCase()))
      return send(res, log, 404, {
        error: { code: 'ResourceGroupNotFound', message: `Resource group '${rg}' could not be found.` },
      });

    const rule = rules.find((r) => r.method === req.method && r.type === type && ++r.seen === r.nth);
    if (rule?.fault.kind === 'conflict')
      return send(res, log, 409, {
        error: {
          code: 'Conflict',
          message: 'Another operation on this or a dependent resource is in progress.',
        },
      });
    if (rule?.fault.kind === 'throttle')
      return send(
        res,
        log,
        429,
        { error: { code: 'TooManyRequests', message: 'The request is being throttled.' } },
        { 'retry-after': String(rule.fault.retryAfterSeconds) },
      );
    const lost = rule?.fault.kind === 'lost-response';

    try {
      const id = resourceId(subscriptionId, rg!, type, name ?? '');
      if (req.method === 'GET' && !name)
        return send(res, log, 200, { value: store.list(type, rg).map(view) });
      if (req.method === 'GET') {
        const r = store.get(id);
        if (!r)
          return send(res, log, 404, {
            error: {
              code: 'ResourceNotFound',
              message: `The Resource '${type}/${name}' under resource group '${rg}' was not found.`,
            },
          });
        return send(res, log, 200, view(r));
      }
      if (req.method === 'PUT' && name) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
        const { resource, created } = store.put(subscriptionId, rg!, type, name, body);
        if (lost) {
          // Carried out in full, but the answer never arrives.
          store.provisioned(resource);
          log.status = 'dropped';
          req.socket.destroy();
          return;
        }
        const asyncOp = startOperation(() => store.provisioned(resource));
        return send(res, log, created ? 201 : 200, view(resource), { 'azure-asyncoperation': asyncOp });
      }
      if (req.method === 'DELETE' && name) {
        if (!store.get(id)) return send(res, log, 204);
        // Refused at once when in use, as ARM does; otherwise removed, and the operation then polled.
        store.remove(id);
        if (lost) {
          log.status = 'dropped';
          req.socket.destroy();
          return;
        }
        const asyncOp = startOperation(() => undefined);
        return send(res, log, 202, undefined, { 'azure-asyncoperation': asyncOp, location: asyncOp });
      }
      return send(res, log, 405, {
        error: { code: 'MethodNotAllowed', message: `${req.method} is not served` },
      });
    } catch (err) {
      if (err instanceof ArmError) return send(res, log, err.status, err.body());
      throw err;
    }
  }

  const server = https.createServer(
    { cert: fs.readFileSync(tls.certFile), key: fs.readFileSync(tls.keyFile) },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'InternalServerError', message: String(err) } }));
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    subscriptionId,
    caFile: tls.certFile,
    tokenFile,
    store,
    requests,
    inject: (rule) => rules.push({ ...rule, seen: 0 }),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
