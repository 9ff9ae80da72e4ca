// Quiescing around an app-consistent point. The guest agent is a fake speaking qemu-ga's
// protocol on a unix socket: no guest OS runs on this machine, and a host-side qemu-ga would
// freeze the host's own filesystems.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { withQuiesce } from '../../activities/process-server/quiesce';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-qga-'));
const socket = path.join(dir, 'qga.sock');
const calls: string[] = [];
let refuseFreeze = false;
let server: net.Server;

before(async () => {
  server = net.createServer((conn) => {
    let buf = '';
    conn.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const req = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { id?: number } };
        buf = buf.slice(nl + 1);
        calls.push(req.execute);
        if (req.execute === 'guest-sync') conn.write(`${JSON.stringify({ return: req.arguments?.id })}\n`);
        else if (req.execute === 'guest-fsfreeze-freeze' && refuseFreeze) {
          conn.write(
            `${JSON.stringify({ error: { class: 'GenericError', desc: 'failed to freeze /data' } })}\n`,
          );
        } else conn.write(`${JSON.stringify({ return: 2 })}\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
});

after(() => {
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the guest agent freezes the filesystems before the point and thaws them after', async () => {
  calls.length = 0;
  const result = await withQuiesce({ guestAgentSocket: socket }, 'vm', async () => {
    calls.push('point');
    return 'frozen-view';
  });
  assert.equal(result, 'frozen-view');
  assert.deepEqual(calls, ['guest-sync', 'guest-fsfreeze-freeze', 'point', 'guest-fsfreeze-thaw']);
});

test('a failed point still thaws the guest', async () => {
  calls.length = 0;
  await assert.rejects(
    withQuiesce({ guestAgentSocket: socket }, 'vm', async () => {
      throw new Error('transaction failed');
    }),
    /transaction failed/,
  );
  assert.equal(calls.at(-1), 'guest-fsfreeze-thaw');
});

test('a refused freeze is a QuiesceFailed failure naming the reason, and nothing stays frozen', async () => {
  calls.length = 0;
  refuseFreeze = true;
  try {
    await assert.rejects(
      withQuiesce({ guestAgentSocket: socket }, 'vm', async () => 'never'),
      (err: unknown) =>
        err instanceof ApplicationFailure &&
        err.type === 'QuiesceFailed' &&
        /failed to freeze \/data/.test(err.message),
    );
    assert.ok(!calls.includes('point'), 'no point is cut without the quiesce');
    assert.equal(calls.at(-1), 'guest-fsfreeze-thaw');
  } finally {
    refuseFreeze = false;
  }
});

test('a missing guest agent socket says what the VM needs', async () => {
  await assert.rejects(
    withQuiesce({ guestAgentSocket: path.join(dir, 'none.sock') }, 'vm', async () => 'never'),
    /org\.qemu\.guest_agent\.0/,
  );
});

test('pre and post commands run around the point; a failing pre still runs post', async () => {
  const log = path.join(dir, 'hooks.log');
  await withQuiesce({ pre: `echo pre >> ${log}`, post: `echo post >> ${log}` }, 'vm', async () =>
    fs.appendFileSync(log, 'point\n'),
  );
  await assert.rejects(
    withQuiesce({ pre: 'exit 3', post: `echo post >> ${log}` }, 'vm', async () => 'never'),
    /exit 3/,
  );
  assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['pre', 'point', 'post', 'post']);
});
