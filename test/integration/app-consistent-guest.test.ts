// App-consistent points with the real QEMU guest agent: the test guest runs Debian's qemu-ga on
// its virtio-serial port and has an ext4 filesystem mounted on the protected disk. An app point
// freezes that filesystem through the agent (guest-fsfreeze-freeze, then thaw). What shows the
// freeze happened is the guest's own side: the agent's fsfreeze hook logged freeze and thaw in
// the guest, and the point's image is a clean filesystem (ext4 clears needs_recovery when it is
// frozen) holding a file the guest wrote just before without any sync (freezing flushes it).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as machines from '../../operations/machines';
import { GuestAgentClient } from '../../lib/qemu/guest-agent-client';
import { statePaths } from '../../lib/config/state-paths';
import { inspectExt4 } from '../helpers/ext4-image';
import { pollFor } from '../helpers/poll';
import { exportedImage, pointById, waitForStatus } from '../helpers/protection';
import { startTestVm, type TestVm } from '../helpers/test-vm';
import { startTestbed, type Testbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let bed: Testbed;
let vm: TestVm;
let scratch: string;

before(async () => {
  bed = await startTestbed();
  scratch = fs.mkdtempSync(path.join(bed.stack.stateDir, 'ga-'));
  // An ext4 filesystem (with its journal) made on the host, mounted by the guest.
  const image = path.join(scratch, 'fs.raw');
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, 32 * MiB);
  execFileSync('mkfs.ext4', ['-q', '-F', image]);
  vm = await startTestVm({ disks: [{ file: image, format: 'raw' }], guestAgent: true });
  const mounted = await vm.run('mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo mounted');
  assert.equal(mounted.code, 0, mounted.output);
});

after(async () => {
  await bed?.stop();
  await vm?.stop();
});

test('an app-consistent point freezes the guest filesystem through the real qemu-ga', async () => {
  const { ctx } = bed;
  // The real agent answers on the host side of its port before OSR uses it.
  const agent = await GuestAgentClient.connect(vm.guestAgentSocket as string);
  await agent.close();

  await machines.protect(ctx, {
    name: 'ga1',
    qmpSocket: vm.qmpSocket,
    policy: 'manual',
    quiesce: { guestAgentSocket: vm.guestAgentSocket },
  });
  await waitForStatus(ctx, 'ga1', (s) => s.state === 'protected');
  await vm.run('rm -f /run/fsfreeze.log');

  // Written into the guest's page cache only: no sync, no O_DIRECT.
  const text = `app-consistent ${randomBytes(8).toString('hex')}`;
  const wrote = await vm.run(`echo '${text}' > /mnt/app.txt`);
  assert.equal(wrote.code, 0, wrote.output);

  const brief = await machines.takePoint(ctx, 'ga1', { kind: 'app', tag: 'real-qemu-ga' });
  const point = await pointById(ctx, 'ga1', brief.id);
  assert.equal(point.kind, 'app');

  // The guest's side: the agent ran its fsfreeze hook for the freeze and then for the thaw.
  const log = await vm.run('cat /run/fsfreeze.log');
  assert.equal(log.code, 0, `the guest has an fsfreeze log: ${log.output}`);
  assert.deepEqual(
    log.output
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]),
    ['freeze', 'thaw'],
    `the guest froze then thawed once: ${log.output}`,
  );
  // The guest answers that its filesystems are thawed again (writes go on).
  const after = await GuestAgentClient.connect(vm.guestAgentSocket as string);
  try {
    assert.equal(await after.execute('guest-fsfreeze-status'), 'thawed');
  } finally {
    await after.close();
  }
  assert.equal((await vm.run('echo more >> /mnt/app.txt')).code, 0, 'the filesystem takes writes again');

  // The point's image: a filesystem frozen clean, with the unsynced file in it.
  const image = path.join(scratch, 'point.raw');
  fs.writeFileSync(image, await exportedImage(ctx, point));
  const { features, content } = inspectExt4(image, '/app.txt');
  assert.match(features, /has_journal/, `an ext4 with a journal: ${features}`);
  assert.doesNotMatch(features, /needs_recovery/, `frozen: no journal to replay in the point (${features})`);
  assert.equal(content.trim(), text, 'the file written just before the point is in it');
  execFileSync('e2fsck', ['-fn', image], { stdio: 'ignore' }); // exit 0: clean
});

test('a process server killed inside the guest agent freeze: the next call thaws the guest, and the point is app-consistent', async () => {
  const { ctx, stack } = bed;
  const marker = path.join(statePaths(stack.config).machines, 'ga1', 'guest-frozen');
  const agentSays = async (command: string) => {
    const agent = await GuestAgentClient.connect(vm.guestAgentSocket as string);
    try {
      return await agent.execute<string>(command);
    } finally {
      agent.close();
    }
  };
  const until = (what: string, probe: () => Promise<boolean>) =>
    pollFor(async () => ((await probe()) ? true : undefined), {
      timeoutMs: 120_000,
      intervalMs: 300,
      failure: () => new Error(`timed out waiting until ${what}`),
    });
  // The guest's fsfreeze hook holds the freeze (before the filesystems are frozen) while /run/hold exists.
  const hook =
    '#!/bin/sh\\necho "$1 $(cut -d" " -f1 /proc/uptime)" >>/run/fsfreeze.log\\n' +
    'if [ "$1" = freeze ]; then touch /run/hook-entered; while [ -f /run/hold ]; do sleep 0.2; done; fi\\n';
  const held = await vm.run(
    `rm -f /run/hook-entered && touch /run/hold && printf '${hook}' >/etc/fsfreeze-hook`,
  );
  assert.equal(held.code, 0, held.output);

  const pending = machines.takePoint(ctx, 'ga1', { kind: 'app', tag: 'killed-in-freeze' });
  await until(
    'the guest agent runs the freeze hook',
    async () => (await vm.run('test -f /run/hook-entered')).code === 0,
  );
  assert.ok(fs.existsSync(marker), 'the freeze is marked before it is asked for');
  await stack.killWorker('process-server');
  // The freeze goes through with nobody left to thaw it: the guest's writes to /mnt now block.
  assert.equal((await vm.run('rm -f /run/hold')).code, 0);
  await until('the guest is frozen', async () => (await agentSays('guest-fsfreeze-status')) === 'frozen');

  await stack.startWorker('process-server');
  const brief = await pending;
  const point = await pointById(ctx, 'ga1', brief.id);
  assert.equal(point.kind, 'app', 'the retried freeze thawed the guest first, then froze it for the point');
  assert.equal(await agentSays('guest-fsfreeze-status'), 'thawed');
  assert.ok(!fs.existsSync(marker), 'the mark is gone once thawed');
  assert.equal((await vm.run('echo again >> /mnt/app.txt')).code, 0, 'the filesystem takes writes again');
});
