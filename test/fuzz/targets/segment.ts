// The segment reader (decodeSegment): byte mutations of valid segments, and structure-aware
// headers with hostile field values that are then properly authenticated (as an attacker holding
// the key, or a buggy writer, would produce), so the checks after authentication are reached too.
import { createCipheriv, randomBytes } from 'node:crypto';
import { compress } from 'zstd-napi';
import { EncryptionKey, Keyring } from '../../../lib/segments/keys';
import {
  decodeSegment,
  encodeSegment,
  SEGMENT_MAGIC,
  SegmentVerificationError,
} from '../../../lib/segments/segment-format';
import type { FuzzTarget, Verdict } from '../harness';
import { fieldU32, mutate, type Rng } from '../random';

const key = EncryptionKey.fromBytes(Buffer.alloc(32, 9));
const keyring = new Keyring([key]);

function validSegment(rng: Rng): Buffer {
  const count = 1 + rng.below(4);
  const extents = [];
  let at = rng.below(64) * 512;
  for (let i = 0; i < count; i++) {
    const length = (1 + rng.below(16)) * 512;
    extents.push({ offset: at, length });
    at += length + rng.below(3) * 512;
  }
  const total = extents.reduce((n, e) => n + e.length, 0);
  const data = rng.chance(0.5) ? Buffer.alloc(total, rng.below(3)) : rng.bytes(total);
  return encodeSegment(
    { machine: 'fz', diskId: 'disk0', cycle: rng.below(5), index: rng.below(5), extents, data },
    key,
  ).segment;
}

const hostileValues = (rng: Rng): unknown =>
  rng.pick<unknown>([
    -1,
    0.5,
    1e300,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 2,
    fieldU32(rng),
    '',
    'x'.repeat(200),
    null,
    true,
    [],
    {},
    [{ offset: 0, length: 512, kind: 'data' }],
    [
      { offset: 512, length: 512, kind: 'zero' },
      { offset: 0, length: 512, kind: 'data' },
    ],
    [{ offset: 0, length: 0, kind: 'data' }],
    [{ offset: Number.MAX_SAFE_INTEGER - 511, length: 1024, kind: 'data' }],
    '../../etc',
    'zstd',
    'none',
    '00'.repeat(12),
    'ff'.repeat(32),
  ]);

/** A header with some fields replaced by hostile values, authenticated with the real key. */
function forgedSegment(rng: Rng): Buffer {
  const valid = validSegment(rng);
  const headerLength = valid.readUInt32BE(8);
  const header = JSON.parse(valid.subarray(12, 12 + headerLength).toString('utf8')) as Record<
    string,
    unknown
  >;
  const fields = Object.keys(header);
  for (let i = 0, n = 1 + rng.below(3); i < n; i++) {
    const field = rng.chance(0.1) ? 'extra' : rng.pick(fields);
    if (rng.chance(0.1)) delete header[field];
    else header[field] = hostileValues(rng);
  }
  // A payload that may not be what the header says: garbage, valid zstd of other sizes, or empty.
  const payload = rng.pick([
    () => rng.bytes(rng.below(4096)),
    () => compress(rng.bytes(rng.below(8192))),
    () => compress(Buffer.alloc(rng.below(1 << 20))),
    () => Buffer.alloc(0),
  ])();
  if (typeof header.payloadLength === 'number' && rng.chance(0.7)) header.payloadLength = payload.length;
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(12);
  SEGMENT_MAGIC.copy(prefix);
  prefix.writeUInt32BE(headerBytes.length, 8);
  const aad = Buffer.concat([prefix, headerBytes]);
  const nonce =
    typeof header.nonce === 'string' && /^[0-9a-f]{24}$/.test(header.nonce)
      ? Buffer.from(header.nonce, 'hex')
      : randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.keyObject, nonce, { authTagLength: 16 });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(payload), cipher.final()]);
  return Buffer.concat([aad, body, cipher.getAuthTag()]);
}

export const segmentTarget: FuzzTarget = {
  name: 'segment reader',
  async run(rng: Rng): Promise<Verdict> {
    const input = rng.chance(0.5) ? mutate(rng, validSegment(rng)) : forgedSegment(rng);
    const { header, data } = decodeSegment(input, keyring);
    // Accepted: what the header promises must hold.
    if (data.length !== header.dataLength)
      throw new Error(`accepted ${data.length} bytes, header says ${header.dataLength}`);
    return 'accepted';
  },
  isTyped: (err) => err instanceof SegmentVerificationError,
};
