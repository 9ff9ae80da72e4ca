// Key rotation below the stack: the key folder (current + retired/), a running pipeline switching
// keys without a restart, and one that fetches a key it lacks before decoding.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { BlockPipeline } from '../../lib/segments/block-pipeline';
import { readKeyFolder, retiredKeyFile, rotateKeyFile } from '../../lib/segments/key-folder';
import { createKeyFile, EncryptionKey, KeyError, Keyring, loadKeyFile } from '../../lib/segments/keys';
import { peekKeyId } from '../../lib/segments/segment-format';

const MiB = 1024 * 1024;
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'osr-keyrot-'));
  dirs.push(dir);
  return dir;
}
const job = (index: number) => ({
  machine: 'm1',
  diskId: 'disk0',
  cycle: 1,
  index,
  extents: [{ offset: 0, length: 4096 }],
  data: randomBytes(4096),
});

describe('the key folder', () => {
  test('rotation keeps the old key in retired/ and makes a new private current key', async () => {
    const file = path.join(await tempDir(), 'keys', 'osr.key');
    const first = await createKeyFile(file);
    const { previous, current } = await rotateKeyFile(file);
    assert.equal(previous.id, first.id);
    assert.ok(!current.equals(first));
    assert.ok((await loadKeyFile(file)).equals(current), 'the current file holds the new key');
    assert.ok((await loadKeyFile(retiredKeyFile(file, first.id))).equals(first), 'the old key is kept');
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    const third = (await rotateKeyFile(file)).current;
    const folder = await readKeyFolder(file);
    assert.equal(folder.current?.id, third.id);
    assert.deepEqual(new Set(folder.keyring.ids), new Set([first.id, current.id, third.id]));
    assert.deepEqual(
      (await fs.readdir(path.dirname(file))).filter((f) => f.startsWith('.')),
      [],
      'no temporary file is left behind',
    );
  });

  test('a missing current file reads as none, a misnamed retired key is refused', async () => {
    const file = path.join(await tempDir(), 'osr.key');
    assert.equal((await readKeyFolder(file)).current, undefined);
    const key = await createKeyFile(file);
    await rotateKeyFile(file);
    await fs.rename(retiredKeyFile(file, key.id), retiredKeyFile(file, '00000000'));
    await assert.rejects(
      readKeyFolder(file),
      (e: unknown) => e instanceof KeyError && /rename it to/.test(e.message),
    );
  });

  test('rotating a missing key file is refused with the file', async () => {
    const file = path.join(await tempDir(), 'osr.key');
    await assert.rejects(
      rotateKeyFile(file),
      (e: unknown) => e instanceof KeyError && e.message.includes(file),
    );
  });
});

describe('a running pipeline', () => {
  test('switches keys without a restart and still decodes segments of the old key', async () => {
    const a = EncryptionKey.generate();
    const b = EncryptionKey.generate();
    const pipeline = new BlockPipeline({ threads: 1, maxBytesInFlight: 8 * MiB, key: a });
    try {
      const before = await pipeline.encode(job(0));
      assert.equal(peekKeyId(before.segment), a.id);
      pipeline.setKeys(b, new Keyring([a]));
      assert.deepEqual(pipeline.keyIds, [b.id, a.id]);
      const afterRotation = await pipeline.encode(job(1));
      assert.equal(peekKeyId(afterRotation.segment), b.id);
      assert.equal((await pipeline.decode(before.segment)).header.keyId, a.id);
      assert.equal((await pipeline.decode(afterRotation.segment)).header.keyId, b.id);
    } finally {
      await pipeline.destroy();
    }
  });

  test('asks for a key it lacks before decoding, and decodes with it', async () => {
    const a = EncryptionKey.generate();
    const b = EncryptionKey.generate();
    const writer = new BlockPipeline({ threads: 1, maxBytesInFlight: 8 * MiB, key: b });
    const segment = (await writer.encode(job(0))).segment;
    await writer.destroy();
    const asked: string[] = [];
    const reader: BlockPipeline = new BlockPipeline({
      threads: 1,
      maxBytesInFlight: 8 * MiB,
      keyring: new Keyring([a]),
      onUnknownKey: async (id) => {
        asked.push(id);
        reader.setKeys(undefined, new Keyring([a, b]));
      },
    });
    try {
      assert.equal((await reader.decode(segment)).header.keyId, b.id);
      assert.deepEqual(asked, [b.id]);
    } finally {
      await reader.destroy();
    }
  });
});
