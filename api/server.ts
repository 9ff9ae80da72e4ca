// The API server on node:http (or node:https with api.tls): routing, auth, JSON responses and
// error mapping. It holds one ControlContext (one Temporal connection) for all requests.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { OsrConfig } from '../lib/config/config';
import { createLogger, type Logger } from '../lib/config/logger';
import { runAs, type Actor } from '../operations/audit';
import { TokenVerifier, type TokenInfo } from '../operations/tokens';
import { ControlContext } from '../operations/context';
import { authenticate, authorize } from './auth';
import { RateLimiter } from './rate-limit';
import { jobLocation } from './jobs';
import { ApprovalPendingError } from '../operations/approvals';
import { readJsonBody, type JsonObject } from './body';
import { toApiError } from './errors';
import { Router, type ApiResponse } from './router';
import { routes } from './routes';

export interface ApiServerOptions {
  config: OsrConfig;
  /** The single token of earlier releases (api.token or its file): the admin identity `legacy`. */
  token?: string;
  /** Overrides api.host / api.port (0 picks a free port). */
  host?: string;
  port?: number;
  /** A context to share (tests); otherwise the server makes and closes its own. */
  ctx?: ControlContext;
  logger?: Logger;
}

export interface ApiServer {
  url: string;
  server: http.Server;
  close(): Promise<void>;
}

const HEADERS = {
  'Content-Type': 'application/json; charset=utf-8',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
};

/** A failover or commit that waits for another identity's approval: accepted (202), with where to follow it. */
function pendingResponse(err: ApprovalPendingError): ApiResponse {
  const location = jobLocation(err.approval.id);
  return {
    status: 202,
    body: { approval: err.approval, workflowId: err.approval.id, location, message: err.message },
    headers: { Location: location },
  };
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { config, token } = options;
  let ctx = options.ctx ?? new ControlContext(config);
  const log = options.logger ?? createLogger('api', config.log.level);
  const router = new Router(routes);
  const verifier = new TokenVerifier(ctx.vault, token);
  const limiter = new RateLimiter(config.api.rateLimit);

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://localhost');
    let response: ApiResponse;
    try {
      const { route, params, access } = router.match(req.method ?? 'GET', url.pathname);
      let identity: TokenInfo | undefined;
      if (access !== 'public') {
        identity = await authenticate(req.headers.authorization, verifier);
        authorize(identity, access, `${route.method} ${route.path}`);
        if (route.method !== 'GET') limiter.take(identity.name);
      }
      let body: Promise<JsonObject> | undefined;
      // Audit entries of the operations name the API's caller (the token's identity) and address.
      const claimed = req.headers['x-osr-operator'];
      const actor: Actor = {
        via: 'api',
        user: identity?.name ?? 'anonymous',
        ...(identity ? { role: identity.role } : {}),
        host: os.hostname(),
        address: req.socket.remoteAddress,
        claimedOperator: typeof claimed === 'string' ? claimed.slice(0, 100) : undefined,
      };
      response = await runAs(actor, () =>
        route.handler({
          ctx,
          params,
          query: url.searchParams,
          raw: req,
          identity,
          body: () => (body ??= readJsonBody(req, config.api.maxBodyBytes)),
        }),
      );
    } catch (err) {
      response =
        err instanceof ApprovalPendingError
          ? pendingResponse(err)
          : failure(err, { method: req.method, path: url.pathname });
    }
    const payload = response.text ?? JSON.stringify(response.body);
    res.writeHead(response.status, {
      ...HEADERS,
      ...response.headers,
      'Content-Length': Buffer.byteLength(payload),
    });
    res.end(payload);
    // The Authorization header is never logged.
    log.info(
      { method: req.method, path: url.pathname, status: response.status, ms: Date.now() - started },
      'request',
    );
  };

  const failure = (err: unknown, request: { method?: string; path: string }): ApiResponse => {
    const { error, expected } = toApiError(err);
    // Unexpected errors are logged in full here and never sent to the client.
    if (!expected) log.error({ err, ...request }, 'request failed');
    // A context keeps a failed Temporal connection forever: start afresh so the API recovers
    // once Temporal is back, instead of answering 503 until restarted.
    if (error.code === 'unavailable' && !options.ctx) {
      const broken = ctx;
      ctx = new ControlContext(config);
      void broken.close().catch(() => undefined);
    }
    return {
      status: error.status,
      body: { error: { code: error.code, message: error.message } },
      headers: error.headers,
    };
  };

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'response failed');
      res.destroy();
    });
  };
  const tls = config.api.tls;
  const server = tls
    ? https.createServer({ cert: fs.readFileSync(tls.certPath), key: fs.readFileSync(tls.keyPath) }, listener)
    : http.createServer(listener);

  const host = options.host ?? config.api.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? config.api.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `${tls ? 'https' : 'http'}://${shownHost}:${port}`,
    server,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive connections would hold close() open.
        server.closeIdleConnections();
      });
      if (!options.ctx) await ctx.close();
    },
  };
}
