// An HTTP proxy in front of Azurite that injects storage faults on request: flip a byte in the
// body of matching uploads (corruption in transit or at rest), answer 503 Server Busy
// (throttling) or 500, or hold the request for a while (an endpoint too slow to answer: if the
// client gave up meanwhile the request is dropped, never applied late).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FaultRule {
  /** Request method and URL matched against this. */
  match: (method: string, url: string) => boolean;
  action: 'corrupt' | 'throttle' | 'server-error' | 'delay';
  /** How many matching requests to hit; then the rule retires (Infinity: until removed). */
  times: number;
  /** Hit only this share of the matching requests, spread evenly (default 1: every one). */
  share?: number;
  /** 'throttle': the Retry-After header's seconds (none when absent). */
  retryAfterSeconds?: number;
  /** 'delay': how long to hold the request before passing it on. */
  delayMs?: number;
  /** Matching requests seen so far (hit or not); kept by the proxy. */
  seen?: number;
}

export interface FaultProxy {
  port: number;
  rules: FaultRule[];
  /** URLs hit by a fault, in order. */
  hits: string[];
  /** Every request that reached the proxy, as "METHOD url", in order of arrival. */
  requests: string[];
  /** Every request with its arrival (performance.now(), ms) and body size: bytes counted at the proxy. */
  bodies: Array<{ at: number; method: string; url: string; bytes: number }>;
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const proxy: FaultProxy = {
    port: 0,
    rules: [],
    hits: [],
    requests: [],
    bodies: [],
    close: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    const at = performance.now();
    proxy.requests.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      proxy.bodies.push({ at, method: req.method ?? '', url: req.url ?? '', bytes: body.length });
      const rule = proxy.rules.find(
        (r) => r.times > 0 && r.match(req.method ?? '', req.url ?? '') && hitNow(r),
      );
      if (rule) {
        rule.times -= 1;
        proxy.hits.push(`${rule.action} ${req.method} ${req.url}`);
        if (rule.action === 'throttle') {
          const retry =
            rule.retryAfterSeconds === undefined ? {} : { 'retry-after': String(rule.retryAfterSeconds) };
          res.writeHead(503, { 'x-ms-error-code': 'ServerBusy', ...retry });
          res.end('throttled by the test fault proxy');
          return;
        }
        if (rule.action === 'server-error') {
          res.writeHead(500, { 'x-ms-error-code': 'InternalError' });
          res.end('internal error from the test fault proxy');
          return;
        }
        if (rule.action === 'delay') {
          setTimeout(() => {
            if (res.destroyed || req.socket.destroyed) return; // the client gave up: dropped
            forward(body);
          }, rule.delayMs ?? 0);
          return;
        }
        // Same length, one byte changed: the request signature still holds, the data does not.
        body = Buffer.from(body);
        if (body.length > 0) {
          const at = Math.floor(body.length / 2);
          body[at] = (body[at] as number) ^ 0x5a;
        }
      }
      forward(body);
    });
    function forward(body: Buffer): void {
      const headers = { ...req.headers, 'content-length': String(body.length) };
      const upstream = http.request(
        { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', (err) => {
        if (res.headersSent) return void res.destroy();
        res.writeHead(502);
        res.end(err.message);
      });
      upstream.end(body);
    }
  });
  // Spreads a rule's hits evenly over the matching requests: share 0.5 hits every other one.
  function hitNow(rule: FaultRule): boolean {
    const n = rule.seen ?? 0;
    rule.seen = n + 1;
    const share = rule.share ?? 1;
    return Math.floor((n + 1) * share) > Math.floor(n * share);
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = (server.address() as AddressInfo).port;
  proxy.close = () => new Promise((r) => server.close(() => r()));
  return proxy;
}
