// The NBD client against a hostile server: every field of the handshake and of the replies can
// be out of range (magics, option replies and their lengths, export size, block sizes, cookies,
// errors, chunk types and lengths, data and hole offsets, block-status descriptors), records can
// be dropped or repeated, and the stream can be cut or mutated anywhere.
import { NbdClient, NbdError } from '../../../lib/qemu/nbd-client';
import {
  IHAVEOPT,
  NBDMAGIC,
  OPT_GO,
  OPT_REPLY_MAGIC,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_INFO,
  REP_META_CONTEXT,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from '../../../lib/qemu/nbd-protocol';
import type { FuzzTarget, Verdict } from '../harness';
import { HostileServer, split, type Turn } from '../hostile-server';
import { fieldU32, fieldU64, mutate, type Rng } from '../random';

const server = new HostileServer('nbd');
const SIZE = 1n << 20n;

function fields(rng: Rng, p: number) {
  return {
    u16: (v: number) => (rng.chance(p) ? fieldU32(rng) & 0xffff : v),
    u32: (v: number) => (rng.chance(p) ? fieldU32(rng) : v),
    u64: (v: bigint) => (rng.chance(p) ? fieldU64(rng) : v),
  };
}

function be(size: number, write: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(size);
  write(b);
  return b;
}

// What the client sends, in bytes: flags 4, then options of 16 + data (structured replies 0,
// set meta context 32, go 13), then two 28-byte requests: replies are written after each.
const CLIENT_BYTES = [0, 20, 68, 97, 153];

function turns(rng: Rng): Turn[] {
  const f = fields(rng, rng.pick([0, 0.02, 0.1, 0.3]));
  const out: Buffer[][] = [[], [], [], [], []];
  let records = out[0]!;
  const optReply = (option: number, type: number, data: Buffer): Buffer =>
    Buffer.concat([
      be(20, (b) => {
        b.writeBigUInt64BE(f.u64(OPT_REPLY_MAGIC), 0);
        b.writeUInt32BE(f.u32(option), 8);
        b.writeUInt32BE(f.u32(type), 12);
        b.writeUInt32BE(f.u32(data.length), 16);
      }),
      data,
    ]);
  records.push(
    be(18, (b) => {
      b.writeBigUInt64BE(f.u64(NBDMAGIC), 0);
      b.writeBigUInt64BE(f.u64(IHAVEOPT), 8);
      b.writeUInt16BE(f.u16(3), 16);
    }),
  );
  records = out[1]!;
  records.push(optReply(OPT_STRUCTURED_REPLY, REP_ACK, Buffer.alloc(0)));
  records = out[2]!;
  const name = Buffer.from('base:allocation');
  records.push(
    optReply(
      OPT_SET_META_CONTEXT,
      REP_META_CONTEXT,
      Buffer.concat([be(4, (b) => b.writeUInt32BE(f.u32(1))), name]).subarray(
        0,
        rng.chance(0.1) ? rng.below(6) : undefined,
      ),
    ),
  );
  records.push(optReply(OPT_SET_META_CONTEXT, REP_ACK, Buffer.alloc(0)));
  records = out[3]!;
  const info = be(12, (b) => {
    b.writeUInt16BE(0, 0);
    b.writeBigUInt64BE(f.u64(SIZE), 2);
    b.writeUInt16BE(f.u16(1), 10);
  });
  records.push(optReply(OPT_GO, REP_INFO, info.subarray(0, rng.chance(0.1) ? rng.below(12) : 12)));
  const sizes = be(14, (b) => {
    b.writeUInt16BE(3, 0);
    b.writeUInt32BE(f.u32(1), 2);
    b.writeUInt32BE(f.u32(4096), 6);
    b.writeUInt32BE(f.u32(32 << 20), 10);
  });
  records.push(optReply(OPT_GO, REP_INFO, sizes.subarray(0, rng.chance(0.1) ? rng.below(14) : 14)));
  records.push(optReply(OPT_GO, REP_ACK, Buffer.alloc(0)));

  // Cookie 1: read(0, 4096); cookie 2: block status of 64 KiB.
  const chunk = (flags: number, type: number, cookie: bigint, payload: Buffer): Buffer =>
    Buffer.concat([
      be(20, (b) => {
        b.writeUInt32BE(f.u32(STRUCTURED_REPLY_MAGIC), 0);
        b.writeUInt16BE(f.u16(flags), 4);
        b.writeUInt16BE(f.u16(type), 6);
        b.writeBigUInt64BE(f.u64(cookie), 8);
        b.writeUInt32BE(f.u32(payload.length), 16);
      }),
      payload,
    ]);
  const readReplies = (): Buffer[] => {
    switch (rng.below(4)) {
      case 0: // simple reply
        return [
          Buffer.concat([
            be(16, (b) => {
              b.writeUInt32BE(f.u32(SIMPLE_REPLY_MAGIC), 0);
              b.writeUInt32BE(f.u32(0), 4);
              b.writeBigUInt64BE(f.u64(1n), 8);
            }),
            Buffer.alloc(4096, 7),
          ]),
        ];
      case 1: // data in two halves (maybe overlapping)
        return [
          chunk(
            0,
            1,
            1n,
            Buffer.concat([be(8, (b) => b.writeBigUInt64BE(f.u64(0n))), Buffer.alloc(2048, 1)]),
          ),
          chunk(
            1,
            1,
            1n,
            Buffer.concat([
              be(8, (b) => b.writeBigUInt64BE(rng.chance(0.2) ? 0n : f.u64(2048n))),
              Buffer.alloc(2048, 2),
            ]),
          ),
        ];
      case 2: // a hole and data
        return [
          chunk(
            0,
            2,
            1n,
            be(12, (b) => {
              b.writeBigUInt64BE(f.u64(0n), 0);
              b.writeUInt32BE(f.u32(1024), 8);
            }).subarray(0, rng.chance(0.1) ? rng.below(12) : 12),
          ),
          chunk(
            1,
            1,
            1n,
            Buffer.concat([be(8, (b) => b.writeBigUInt64BE(f.u64(1024n))), Buffer.alloc(3072, 3)]),
          ),
        ];
      default: // an error chunk
        return [
          chunk(
            1,
            rng.pick([0x8001, 0x8002, 0x8000 + (fieldU32(rng) % 0x8000)]),
            1n,
            Buffer.concat([
              be(6, (b) => {
                b.writeUInt32BE(f.u32(5), 0);
                b.writeUInt16BE(f.u16(4), 4);
              }),
              Buffer.from('oops'),
              be(8, (b) => b.writeBigUInt64BE(f.u64(0n))),
            ]).subarray(0, rng.below(4) === 0 ? rng.below(18) : 18),
          ),
        ];
    }
  };
  records = out[4]!;
  records.push(...readReplies());
  const descriptors = 1 + rng.below(4);
  const status = Buffer.alloc(4 + 8 * descriptors);
  status.writeUInt32BE(f.u32(1), 0);
  for (let i = 0; i < descriptors; i++) {
    status.writeUInt32BE(f.u32(65536 / descriptors), 4 + 8 * i);
    status.writeUInt32BE(f.u32(i % 2), 8 + 8 * i);
  }
  records.push(
    chunk(1, 5, 2n, status.subarray(0, rng.chance(0.1) ? rng.below(status.length) : status.length)),
  );

  // Records dropped or repeated, bytes mutated, each turn cut anywhere.
  return out.map((recs, turn) => {
    if (rng.chance(0.05) && recs.length) recs.splice(rng.below(recs.length), 1);
    if (rng.chance(0.05) && recs.length)
      recs.splice(rng.below(recs.length), 0, recs[rng.below(recs.length)]!);
    let bytes: Buffer = Buffer.concat(recs);
    if (rng.chance(0.08)) bytes = mutate(rng, bytes);
    return {
      after: CLIENT_BYTES[turn]!,
      pieces: split(bytes, () => (rng.chance(0.6) ? bytes.length : 1 + rng.below(32))),
    };
  });
}

export const nbdTarget: FuzzTarget = {
  name: 'NBD client',
  setup: () => server.start(),
  teardown: () => server.stop(),
  timeoutMs: 15_000,
  async run(rng: Rng): Promise<Verdict> {
    server.answer(turns(rng), 'bytes');
    const client = await NbdClient.connect({
      socket: server.socketPath,
      exportName: 'disk0',
      metaContexts: ['base:allocation'],
      connectTimeoutMs: 3000,
    });
    try {
      const [read, status] = await Promise.allSettled([
        client.read(0, 4096),
        client.blockStatus(0, 65536, 'base:allocation'),
      ]);
      for (const r of [read, status]) if (r.status === 'rejected') throw r.reason;
      return 'accepted';
    } finally {
      await client.close();
    }
  },
  isTyped: (err) => err instanceof NbdError,
};
