// The HTTP body parser of `osr serve` (readJsonBody and the field checks routes use) behind a
// real node:http server, fed raw requests: lying or missing Content-Length, chunked bodies,
// content types, invalid UTF-8, deep nesting, huge strings and numbers, prototype keys.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  onlyFields,
  optionalBoolean,
  optionalDuration,
  optionalEnum,
  optionalString,
  readJsonBody,
} from '../../../api/body';
import { ApiError } from '../../../api/errors';
import { parseDuration } from '../../../shared/policy';
import type { FuzzTarget, Verdict } from '../harness';
import { fieldU32, mutate, type Rng } from '../random';

const MAX_BODY = 64 * 1024;
let server: http.Server | undefined;
let port = 0;
/** The verdict of the request being handled: the parser's, not the HTTP layer's. */
let verdict: Promise<Verdict> | undefined;

function jsonValue(rng: Rng, depth: number): string {
  if (depth > 3 || rng.chance(0.3))
    return rng.pick([
      '0',
      '-0',
      '1e999',
      '-1e-999',
      '123456789012345678901234567890',
      'true',
      'null',
      '"30s"',
      '"latest"',
      '"\\ud800"',
      '"\\u0000"',
      `"${'x'.repeat(rng.below(70_000))}"`,
      String(fieldU32(rng)),
    ]);
  if (rng.chance(0.5))
    return `[${Array.from({ length: rng.below(4) }, () => jsonValue(rng, depth + 1)).join(',')}]`;
  const keys = ['point', 'force', 'every', 'kind', 'tag', '__proto__', 'constructor', '', 'a"b'];
  return `{${Array.from({ length: rng.below(5) }, () => `${JSON.stringify(rng.pick(keys))}:${jsonValue(rng, depth + 1)}`).join(',')}}`;
}

function body(rng: Rng): Buffer {
  const choice = rng.below(10);
  if (choice === 0) return Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
  if (choice === 1) return rng.bytes(rng.below(256));
  if (choice === 2) return Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('{"point":"latest"}')]);
  const json = Buffer.from(jsonValue(rng, 0), 'utf8');
  return rng.chance(0.3) ? mutate(rng, json) : json;
}

function request(rng: Rng): Buffer {
  const payload = body(rng);
  const headers = ['POST /fuzz HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close'];
  const type = rng.pick([
    'application/json',
    'application/merge-patch+json',
    'text/plain',
    'application/jsonx',
    '',
    undefined,
  ]);
  if (type !== undefined) headers.push(`Content-Type: ${type}`);
  let framed: Buffer;
  if (rng.chance(0.2)) {
    headers.push('Transfer-Encoding: chunked');
    const chunks: Buffer[] = [];
    for (let at = 0; at < payload.length; ) {
      const n = 1 + rng.below(4096);
      const piece = payload.subarray(at, at + n);
      chunks.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
      at += n;
    }
    chunks.push(Buffer.from('0\r\n\r\n'));
    framed = Buffer.concat(chunks);
  } else {
    const declared = rng.chance(0.85)
      ? payload.length
      : rng.pick([0, 1, payload.length + 10, MAX_BODY + 1, fieldU32(rng)]);
    headers.push(`Content-Length: ${declared}`);
    framed = payload;
  }
  return Buffer.concat([Buffer.from(`${headers.join('\r\n')}\r\n\r\n`), framed]);
}

async function handle(req: http.IncomingMessage): Promise<Verdict> {
  const parsed = await readJsonBody(req, MAX_BODY);
  // What the routes then do with it.
  onlyFields(
    parsed,
    Object.keys(parsed).filter((k) => k !== 'constructor'),
  );
  optionalString(parsed, 'point', 'give a point id or "latest"');
  optionalBoolean(parsed, 'force');
  optionalEnum(parsed, 'kind', ['crash', 'app'] as const);
  optionalDuration(parsed, 'every', (text) => parseDuration(text, 'every'));
  return 'accepted';
}

export const httpBodyTarget: FuzzTarget = {
  name: 'HTTP body parser',
  async setup() {
    server = http.createServer((req, res) => {
      verdict = handle(req);
      verdict.then(
        () => res.end('ok'),
        (err: unknown) => {
          res.statusCode = err instanceof ApiError ? err.status : 500;
          res.end();
        },
      );
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  },
  async teardown() {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  },
  timeoutMs: 10_000,
  async run(rng: Rng): Promise<Verdict> {
    verdict = undefined;
    const socket = net.createConnection({ port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    socket.end(request(rng));
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
    // No verdict: node's HTTP parser refused the request before it reached OSR's parser.
    return verdict ?? 'rejected';
  },
  isTyped: (err) => err instanceof ApiError,
};
