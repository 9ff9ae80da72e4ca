// Failback's disk inside an agent machine, both ends in one process: the process server's
// AgentTargetDisk (lib/agents/agent-target-disk.ts) over a real AgentChannel, whose lines the
// agent's FailbackTarget (agent/failback-target.ts) serves on a file standing in for the disk.
// What the master target writes in pieces of any size lands whole; a read longer than a frame
// comes back whole and in order, checksums are the bytes'; an agent that is not connected here is
// named, with where to look.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FailbackTarget } from '../../agent/failback-target';
import { frameReader, type ServerMessage, type TargetRequest } from '../../agent/protocol';
import { blockChecksums } from '../../agent/tracking/checksums';
import { AgentNotHereError, AgentTargetDisk, closeAgentDisks } from '../../lib/agents/agent-target-disk';
import { AgentChannel, registerChannel, unregisterChannel } from '../../lib/agents/channel';

const MiB = 1024 * 1024;
const SIZE = 9 * MiB; // over two 4 MiB data frames
const facts = { machineId: 'm', hostname: 'h', os: 'o', kernel: 'k', agentVersion: 'v', disks: [] };
let dir: string;
let channel: AgentChannel;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-agent-target-disk-'));
  fs.mkdirSync(path.join(dir, 'sys', 'xdb'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'sys', 'xdb', 'size'), `${SIZE / 512}\n`);
  fs.writeFileSync(path.join(dir, 'xdb'), Buffer.alloc(SIZE));
  const agent = new FailbackTarget({
    tracks: () => false,
    devDir: dir,
    sysBlock: path.join(dir, 'sys'),
    openExclusive: (file) => fs.promises.open(file, 'r+'),
  });
  // The agent's answers go back through the process server's own frame parsing.
  const toServer = frameReader(
    (line) => {
      const m = line as { id: number; result?: unknown; error?: { name: 'Error'; message: string } };
      channel.onReply(m.id, m.result, m.error);
    },
    (id, data) => channel.onData(id, data),
  );
  channel = new AgentChannel('ag-t', facts, (line) => {
    const m = JSON.parse(line) as Extract<ServerMessage, { type: 'request' }>;
    void agent.serve(m.id, m.request as TargetRequest, async (...pieces) => {
      for (const p of pieces) toServer(Buffer.from(p)); // a copy: the agent reuses its read buffers
    });
  });
  registerChannel(channel);
});
after(() => {
  unregisterChannel(channel, 'test over');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('writes of any size land whole; a read longer than a frame comes back whole, checksums are the bytes', async () => {
  const disk = await AgentTargetDisk.open('ag-t', 'xdb');
  assert.equal(disk.size, SIZE);
  const data = randomBytes(MiB + 3 * 512); // nine 128 KiB requests, the last short, 8 in flight
  await disk.write(2 * MiB - 512, data);
  await disk.zero(2 * MiB, 4096);
  await disk.flush();
  const expected = Buffer.alloc(SIZE);
  data.copy(expected, 2 * MiB - 512);
  expected.fill(0, 2 * MiB, 2 * MiB + 4096);
  assert.ok(fs.readFileSync(path.join(dir, 'xdb')).equals(expected), 'the file is what was written');
  const back = Buffer.alloc(SIZE + 512);
  await disk.readInto(back, 512, 0, SIZE);
  assert.ok(back.subarray(512).equals(expected), 'a 9 MiB read, three frames, in place');
  const sums = await disk.checksums(0, SIZE, 64 * 1024);
  assert.ok(sums.equals(blockChecksums(expected, 64 * 1024)), 'the checksums are the bytes');
  assert.equal(await closeAgentDisks('ag-t'), 1);
});

test('an agent not connected to this process is named with where to look', async () => {
  await assert.rejects(
    AgentTargetDisk.open('ag-elsewhere', 'xdb'),
    (err: Error) =>
      err instanceof AgentNotHereError &&
      /agent ag-elsewhere is not connected to this process server \(see `osr agent show ag-elsewhere`/.test(
        err.message,
      ),
  );
});
