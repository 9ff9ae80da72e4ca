// One test per kind of failure the fuzzers found (test/fuzz, docs/fuzzing.md), each with the
// exact hostile input, so none comes back.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { readJsonBody } from '../../api/body';
import { ApiError } from '../../api/errors';
import { NbdClient } from '../../lib/qemu/nbd-client';
import {
  IHAVEOPT,
  NBDMAGIC,
  NbdProtocolError,
  OPT_GO,
  OPT_REPLY_MAGIC,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_INFO,
  REP_META_CONTEXT,
  STRUCTURED_REPLY_MAGIC,
} from '../../lib/qemu/nbd-protocol';
import { QmpClient, QmpProtocolError } from '../../lib/qemu/qmp-client';
import { HostileServer } from '../fuzz/hostile-server';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}}}\n';
const line = (text: string) => Buffer.from(`${text}\n`);

describe('QMP client', () => {
  const server = new HostileServer('qmp-reg');
  before(() => server.start());
  after(() => server.stop());

  test('an event named "error" is not emitted as EventEmitter\'s error (it crashed the process)', async () => {
    server.answer(
      [
        { after: 0, pieces: [Buffer.from(GREETING)] },
        { after: 1, pieces: [line('{"event": "error", "data": "x"}'), line('{"return": {}, "id": 1}')] },
        { after: 2, pieces: [line('{"return": [], "id": 2}')] },
      ],
      'lines',
    );
    const client = await QmpClient.connect(server.socketPath, { greetingTimeoutMs: 2000 });
    const events: string[] = [];
    client.on('event', (e: { event: string }) => events.push(e.event));
    assert.deepEqual(await client.execute('query-block'), []);
    await client.close();
  });

  test('a line that is JSON but not an object is refused, typed (it threw TypeError from a socket handler)', async () => {
    server.answer(
      [
        { after: 0, pieces: [Buffer.from(GREETING)] },
        { after: 1, pieces: [line('null')] },
      ],
      'lines',
    );
    await assert.rejects(
      QmpClient.connect(server.socketPath, { greetingTimeoutMs: 2000 }),
      (e: unknown) => e instanceof QmpProtocolError && e.kind === 'not-object',
    );
  });

  test('a reply with another id is a typed refusal (it was a plain Error)', async () => {
    server.answer(
      [
        { after: 0, pieces: [Buffer.from(GREETING)] },
        { after: 1, pieces: [line('{"return": {}, "id": 7}')] },
      ],
      'lines',
    );
    await assert.rejects(
      QmpClient.connect(server.socketPath, { greetingTimeoutMs: 2000 }),
      (e: unknown) => e instanceof QmpProtocolError && e.kind === 'unexpected-id',
    );
  });

  test('an endless line is refused at its cap, fast (it took seconds of rescanning per 16 MiB)', async () => {
    server.answer(
      [
        { after: 0, pieces: [Buffer.from(GREETING)] },
        { after: 1, pieces: [Buffer.alloc(20 * 1024 * 1024, 0x61)] },
      ],
      'lines',
    );
    const started = Date.now();
    await assert.rejects(
      QmpClient.connect(server.socketPath, { greetingTimeoutMs: 2000 }),
      (e: unknown) => e instanceof QmpProtocolError && e.kind === 'line-too-long',
    );
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  });
});

describe('NBD client', () => {
  const server = new HostileServer('nbd-reg');
  before(() => server.start());
  after(() => server.stop());

  const u = (bytes: number, write: (b: Buffer) => void): Buffer => {
    const b = Buffer.alloc(bytes);
    write(b);
    return b;
  };
  const optReply = (option: number, type: number, data: Buffer): Buffer =>
    Buffer.concat([
      u(20, (b) => {
        b.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
        b.writeUInt32BE(option, 8);
        b.writeUInt32BE(type, 12);
        b.writeUInt32BE(data.length, 16);
      }),
      data,
    ]);
  const hello = u(18, (b) => {
    b.writeBigUInt64BE(NBDMAGIC, 0);
    b.writeBigUInt64BE(IHAVEOPT, 8);
    b.writeUInt16BE(3, 16);
  });
  const meta = (data: Buffer) => [
    optReply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, data),
    optReply(OPT_SET_META_CONTEXT, REP_ACK, Buffer.alloc(0)),
  ];
  const goodMeta = meta(Buffer.concat([u(4, (b) => b.writeUInt32BE(1)), Buffer.from('base:allocation')]));
  const go = (minimum: number) => [
    optReply(
      OPT_GO,
      REP_INFO,
      u(12, (b) => b.writeBigUInt64BE(1n << 20n, 2)),
    ),
    optReply(
      OPT_GO,
      REP_INFO,
      u(14, (b) => {
        b.writeUInt16BE(3, 0);
        b.writeUInt32BE(minimum, 2);
        b.writeUInt32BE(4096, 6);
        b.writeUInt32BE(1 << 20, 10);
      }),
    ),
    optReply(OPT_GO, REP_ACK, Buffer.alloc(0)),
  ];
  const chunk = (flags: number, type: number, payload: Buffer): Buffer =>
    Buffer.concat([
      u(20, (b) => {
        b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
        b.writeUInt16BE(flags, 4);
        b.writeUInt16BE(type, 6);
        b.writeBigUInt64BE(1n, 8);
        b.writeUInt32BE(payload.length, 16);
      }),
      payload,
    ]);
  const dataChunk = (flags: number, at: number, n: number) =>
    chunk(flags, 1, Buffer.concat([u(8, (b) => b.writeBigUInt64BE(BigInt(at))), Buffer.alloc(n, 9)]));
  const answer = (metaReplies: Buffer[], goReplies: Buffer[], replies: Buffer[] = []) =>
    server.answer(
      [
        { after: 0, pieces: [hello] },
        { after: 20, pieces: [optReply(OPT_STRUCTURED_REPLY, REP_ACK, Buffer.alloc(0))] },
        { after: 68, pieces: metaReplies },
        { after: 97, pieces: goReplies },
        { after: 125, pieces: replies },
      ],
      'bytes',
    );
  const connect = () =>
    NbdClient.connect({
      socket: server.socketPath,
      exportName: 'disk0',
      metaContexts: ['base:allocation'],
      connectTimeoutMs: 3000,
    });
  const refused = (kind: string) => (e: unknown) => e instanceof NbdProtocolError && e.kind === kind;

  test('a metadata context reply too short for its id is refused, typed (it was a RangeError)', async () => {
    answer(meta(Buffer.alloc(2)), go(1));
    await assert.rejects(connect(), refused('bad-length'));
  });

  test('a zero minimum block size is refused (reads would have resolved without a request)', async () => {
    answer(goodMeta, go(0));
    await assert.rejects(connect(), refused('bad-block-size'));
  });

  test('a hole chunk too short for its fields is refused, typed (it was a RangeError)', async () => {
    answer(goodMeta, go(1), [chunk(1, 2, Buffer.alloc(4))]);
    const client = await connect();
    await assert.rejects(client.read(0, 4096), refused('bad-length'));
    await client.close();
  });

  test('overlapping data chunks are refused: a read never resolves with bytes no chunk filled', async () => {
    answer(goodMeta, go(1), [dataChunk(0, 0, 2048), dataChunk(1, 0, 2048)]);
    const client = await connect();
    await assert.rejects(client.read(0, 4096), refused('overlap'));
    await client.close();
  });
});

test('a body cut short of its Content-Length is a 400, not an untyped "aborted"', async () => {
  let outcome: Promise<unknown> | undefined;
  const server = http.createServer((req, res) => {
    outcome = readJsonBody(req, 4096);
    outcome.then(
      () => res.end(),
      () => res.end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.createConnection({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  socket.write(
    'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"po',
  );
  // The client goes away mid-body.
  await new Promise((r) => setTimeout(r, 100));
  socket.destroy();
  while (outcome === undefined) await new Promise((r) => setTimeout(r, 10));
  await assert.rejects(
    outcome!,
    (e: unknown) => e instanceof ApiError && e.status === 400 && /ended early/.test(e.message),
  );
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
