// The process server's side of an agent connection (lib/agents/channel.ts): which answer fits
// which request. A failed data request (a read of a point whose snapshot was invalidated) is
// answered by a reply line with its error: the request fails with the agent's kind and message,
// and the connection stays; a reply with a result where bytes were asked is still refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AgentChannel, AgentProtocolError, AgentRequestError } from '../../lib/agents/channel';

const facts = { machineId: 'm', hostname: 'h', os: 'o', kernel: 'k', agentVersion: 'v', disks: [] };
const read = { op: 'read', pitId: 'web-c3', disk: 'vda', offset: 0, length: 512 } as const;

test("a failed read is answered by the agent's error, and the connection stays", async () => {
  const channel = new AgentChannel('ag-1', facts, () => undefined);
  const asked = channel.request(read);
  channel.onReply(1, undefined, { name: 'PointOverflowError', message: 'the filesystem is full' });
  const err = await asked.then(
    () => assert.fail('the read resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AgentRequestError);
  assert.equal(err.kind, 'PointOverflowError');
  assert.equal(err.message, 'the filesystem is full');
  const next = channel.request(read);
  channel.onData(2, Buffer.alloc(512));
  assert.equal(((await next) as Buffer).length, 512);
});

test('a result where bytes were asked, or bytes where a reply was, is refused', async () => {
  const channel = new AgentChannel('ag-1', facts, () => undefined);
  const asked = channel.request(read);
  assert.throws(() => channel.onReply(1, { fake: true }), AgentProtocolError);
  await assert.rejects(asked, AgentProtocolError);
  const listed = channel.request({ op: 'list' });
  assert.throws(() => channel.onData(2, Buffer.alloc(1)), AgentProtocolError);
  await assert.rejects(listed, AgentProtocolError);
});
