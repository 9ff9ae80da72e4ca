// The copy of an agent's change log (agent/tracking/era-log.ts): a clean stop writes it over the
// room taken on the disk when tracking started (the same file, no new allocation, so a full disk
// cannot fail the stop), and a copy into a place with no such room is made beside and renamed in.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { copyLog } from '../../agent/tracking/era-log';

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'osr-era-log-'));

test('a log copied over the room reserved for it: same file, every byte, nothing left beside', async () => {
  const dir = scratch();
  const live = path.join(dir, 'live.era');
  const kept = path.join(dir, 'kept.era');
  const log = randomBytes(3 * (1 << 20) + 4096); // more than one 1 MiB chunk, not a whole number of them
  fs.writeFileSync(live, log);
  fs.writeFileSync(kept, Buffer.alloc(log.length)); // the room newLog writes out
  const inode = fs.statSync(kept).ino;
  await copyLog(live, kept);
  assert.equal(fs.statSync(kept).ino, inode, 'written in place, not a new file');
  assert.ok(fs.readFileSync(kept).equals(log));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['kept.era', 'live.era']);
  fs.rmSync(dir, { recursive: true });
});

test('a log copied where there is no room of its size yet: a new file with every byte', async () => {
  const dir = scratch();
  const live = path.join(dir, 'live.era');
  const log = randomBytes(1 << 20);
  fs.writeFileSync(live, log);
  for (const to of [path.join(dir, 'absent.era'), path.join(dir, 'smaller.era')]) {
    if (to.endsWith('smaller.era')) fs.writeFileSync(to, Buffer.alloc(4096));
    await copyLog(live, to);
    assert.ok(fs.readFileSync(to).equals(log), to);
  }
  assert.deepEqual(fs.readdirSync(dir).sort(), ['absent.era', 'live.era', 'smaller.era']);
  fs.rmSync(dir, { recursive: true });
});
