// An HTTP proxy in front of Azurite that injects storage faults on request: flip a byte in the
// body of matching uploads (corruption in transit or at rest), or answer 503 (throttling).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FaultRule {
  /** Request method and URL matched against this. */
  match: (method: string, url: string) => boolean;
  action: 'corrupt' | 'throttle';
  /** How many matching requests to hit; then the rule retires. */
  times: number;
}

export interface FaultProxy {
  port: number;
  rules: FaultRule[];
  /** URLs hit by a fault, in order. */
  hits: string[];
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const proxy: FaultProxy = { port: 0, rules: [], hits: [], close: async () => undefined };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      const rule = proxy.rules.find((r) => r.times > 0 && r.match(req.method ?? '', req.url ?? ''));
      if (rule) {
        rule.times -= 1;
        proxy.hits.push(`${rule.action} ${req.method} ${req.url}`);
        if (rule.action === 'throttle') {
          res.writeHead(503, { 'x-ms-error-code': 'ServerBusy' });
          res.end('throttled by the test fault proxy');
          return;
        }
        // Same length, one byte changed: the request signature still holds, the data does not.
        body = Buffer.from(body);
        if (body.length > 0) {
          const at = Math.floor(body.length / 2);
          body[at] = (body[at] as number) ^ 0x5a;
        }
      }
      const headers = { ...req.headers, 'content-length': String(body.length) };
      const upstream = http.request(
        { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', (err) => {
        res.writeHead(502);
        res.end(err.message);
      });
      upstream.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = (server.address() as AddressInfo).port;
  proxy.close = () => new Promise((r) => server.close(() => r()));
  return proxy;
}
