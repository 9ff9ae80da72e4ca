// The segment header says `machine` in TypeScript and `machineId` on the wire (authenticated
// bytes): segments written before the rename decode, and new ones are byte-compatible.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { EncryptionKey, Keyring } from '../../lib/segments/keys';
import { decodeSegment, encodeSegment } from '../../lib/segments/segment-format';

const key = EncryptionKey.generate();
const keyring = new Keyring([key]);

test('the header is stored with the key machineId, in the order segments always had', () => {
  const data = randomBytes(8192);
  const { segment, header } = encodeSegment(
    { machine: 'vm-1', diskId: 'd0', cycle: 3, index: 2, extents: [{ offset: 0, length: 8192 }], data },
    key,
  );
  const length = segment.readUInt32BE(8);
  const wire = JSON.parse(segment.subarray(12, 12 + length).toString('utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(wire), [
    'version',
    'machineId',
    'diskId',
    'cycle',
    'index',
    'extents',
    'rawLength',
    'dataLength',
    'sha256',
    'compression',
    'payloadLength',
    'nonce',
    'keyId',
  ]);
  assert.equal(wire.machineId, 'vm-1');
  assert.equal(header.machine, 'vm-1');
  assert.equal('machineId' in header, false);
  // A header logged or measured reads as it is stored.
  assert.equal(JSON.stringify(header), segment.subarray(12, 12 + length).toString('utf8'));

  const decoded = decodeSegment(segment, keyring);
  assert.equal(decoded.header.machine, 'vm-1');
  assert.deepEqual(decoded.header, header);
  assert.ok(decoded.data.equals(data));
});
