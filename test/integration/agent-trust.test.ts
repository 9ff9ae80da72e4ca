// Who the agent listener trusts, against the real listener and a real vault on Azurite, with a
// small TLS client in the test speaking agent/protocol.ts as an agent does (no guest needed):
// forged ids, another agent's credential, uninstalled agents and spent tokens are refused with
// nothing written for them; an agent answers only what was asked on its own connection, so a
// machine protected through agent A is never read through agent B, nor taken over by enrolling B
// with A's machine id.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import {
  encode,
  encodeData,
  frameReader,
  type AgentMessage,
  type MachineFacts,
  type ServerMessage,
} from '../../agent/protocol';
import { azuriteConnectionString } from '../../lib/azure/blob-client';
import { Vault } from '../../lib/azure/vault';
import { agentChannel } from '../../lib/agents/channel';
import { startAgentListener, type AgentListener } from '../../lib/agents/listener';
import { agentDoc, AGENTS_PREFIX, agentTokenDoc, createAgentToken } from '../../lib/agents/registry';
import { createLogger } from '../../lib/config/logger';
import { freePort } from '../../lib/process/ports';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';
import { agentSource } from '../../lib/sources/agent-source';
import type { FrozenDisk, ProtectedMachine } from '../../shared/replication-types';
import { startAzurite } from '../../stack/azurite';
import { pollFor } from '../helpers/poll';

let dir: string;
let azurite: RunningProcess;
let vault: Vault;
let listener: AgentListener;

const facts = (machineId: string): MachineFacts => ({
  machineId,
  hostname: `host-${machineId.slice(0, 4)}`,
  os: 'Test Linux',
  kernel: '6.1.0',
  agentVersion: 'test',
  disks: [{ name: 'vdb', sizeBytes: 8 * 1024 * 1024, readOnly: false }],
});

/** A TLS client that speaks like an agent and keeps everything the listener sent it. */
interface FakeAgent {
  got: ServerMessage[];
  closed: Promise<void>;
  send(m: AgentMessage): void;
  sendData(id: number, data: Buffer): void;
  next<T extends ServerMessage['type']>(type: T): Promise<Extract<ServerMessage, { type: T }>>;
}

async function dial(): Promise<FakeAgent> {
  const socket = tls.connect({ host: '127.0.0.1', port: listener.port, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  // What the agent does: the pinned fingerprint before any byte.
  assert.equal(socket.getPeerX509Certificate()?.fingerprint256, listener.fingerprint);
  const got: ServerMessage[] = [];
  socket.on(
    'data',
    frameReader(
      (v) => got.push(v as ServerMessage),
      () => undefined,
    ),
  );
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    got,
    closed,
    send: (m) => void socket.write(encode(m)),
    sendData: (id, data) => void socket.write(encodeData(id, data)),
    next: (type) =>
      pollFor(async () => got.find((m) => m.type === type) as never, {
        timeoutMs: 10_000,
        intervalMs: 20,
        failure: () => new Error(`no ${type} message (got ${JSON.stringify(got)})`),
      }),
  };
}

async function enroll(
  machineId: string,
  token?: string,
  previous?: { agentId: string; secret: string },
): Promise<{ agentId: string; secret: string }> {
  const a = await dial();
  a.send({
    type: 'enroll',
    token: token ?? (await createAgentToken(vault, 600, 'test')).token,
    facts: facts(machineId),
    previous,
  });
  const m = await a.next('enrolled');
  await a.closed;
  return m;
}

async function hello(agentId: string, secret: string): Promise<FakeAgent> {
  const a = await dial();
  a.send({ type: 'hello', agentId, secret, facts: facts('ignored') });
  return a;
}

/** Refused with `code`, then closed by the listener. */
async function refusedWith(a: FakeAgent, code: string): Promise<void> {
  const m = await a.next('refused');
  assert.equal(m.code, code, m.message);
  await a.closed;
}

const etagOf = async (doc: string) => (await vault.read(doc))?.etag;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-agent-trust-'));
  const port = await freePort();
  azurite = await startAzurite({ port, logFile: path.join(dir, 'azurite.log') });
  vault = new Vault(BlobServiceClient.fromConnectionString(azuriteConnectionString(port)));
  listener = await startAgentListener({
    vault,
    host: '127.0.0.1',
    port: 0,
    address: 'test-listener',
    stateDir: dir,
    log: createLogger('agent-trust', 'silent'),
  });
});

after(async () => {
  await listener?.close();
  if (azurite) await stopPid(azurite.pid);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('forged ids, borrowed credentials, uninstalled agents and spent tokens are refused, writing nothing', async () => {
  const tokenA = (await createAgentToken(vault, 600, 'test')).token;
  const a = await enroll('aaaa0000', tokenA);
  const b = await enroll('bbbb0000');
  const spent = await etagOf(agentTokenDoc(tokenA));
  const aRecord = await etagOf(agentDoc(a.agentId));
  const names = async () => (await vault.listNames(AGENTS_PREFIX)).sort();
  const before = await names();
  assert.equal(before.length, 2);

  // A forged id (valid form, never enrolled), with and without a credential of another agent.
  await refusedWith(await hello('ag-0123456789ab', b.secret), 'agent-unknown');
  // A real id with another agent's credential.
  await refusedWith(await hello(a.agentId, b.secret), 'agent-unknown');
  // A spent token, replayed for another machine: no new agent, the token's record untouched.
  const replay = await dial();
  replay.send({ type: 'enroll', token: tokenA, facts: facts('cccc0000') });
  await refusedWith(replay, 'token-used');
  // Data before any hello.
  const early = await dial();
  early.sendData(1, Buffer.alloc(16));
  await refusedWith(early, 'bad-message');

  assert.deepEqual(await names(), before, 'no agent record was made for a refused peer');
  assert.equal(await etagOf(agentDoc(a.agentId)), aRecord, "agent A's record was not written");
  assert.equal(await etagOf(agentTokenDoc(tokenA)), spent, 'the spent token was not written again');
  assert.equal(agentChannel(a.agentId), undefined, 'no connection is registered as agent A');

  // Uninstalled (what `osr agent uninstall` does: its record deleted): refused, not recreated.
  await vault.remove(agentDoc(b.agentId));
  await refusedWith(await hello(b.agentId, b.secret), 'agent-unknown');
  assert.equal(await vault.read(agentDoc(b.agentId)), undefined, 'the uninstalled agent stays deleted');
});

test("an agent answers only its own connection's requests: A's machine is never read through B", async () => {
  const a = await enroll('dddd0000');
  const b = await enroll('eeee0000');
  const agentA = await hello(a.agentId, a.secret);
  const agentB = await hello(b.agentId, b.secret);
  await Promise.all([agentA.next('welcome'), agentB.next('welcome')]);

  // A disk agent A froze, read by the process server: the request goes to A's connection only.
  const frozen: FrozenDisk = {
    diskId: 'vdb',
    sizeBytes: 4096,
    exportName: 'p1/vdb',
    nbdSocket: `agent:${a.agentId}`,
    mode: 'full',
    agentId: a.agentId,
  };
  const reader = await agentSource.openFrozenDisk(frozen);
  const target = Buffer.alloc(4096);
  const reading = reader.readInto(target, 0, 0, 4096);
  const request = await agentA.next('request');
  assert.deepEqual(request.request, { op: 'read', pitId: 'p1', disk: 'vdb', offset: 0, length: 4096 });

  // B answers A's request id with its own bytes: B is refused and dropped, A's read still waits.
  agentB.sendData(request.id, Buffer.alloc(4096, 0xbb));
  await refusedWith(agentB, 'bad-message');
  assert.equal(agentB.got.filter((m) => m.type === 'request').length, 0, 'B was asked nothing');
  agentA.sendData(request.id, Buffer.alloc(4096, 0xaa));
  await reading;
  assert.ok(target.equals(Buffer.alloc(4096, 0xaa)), "the read holds A's bytes, not B's");

  // A freeze answered with a disk that was not asked for is refused by the connector.
  const machine = {
    name: 'web',
    source: { type: 'agent', agentId: a.agentId },
  } as unknown as ProtectedMachine;
  const connector = await agentSource.connect(machine, {});
  const freezing = connector.freeze(['vdb'], 'p2');
  const freeze = await pollFor(
    async () => agentA.got.find((m) => m.type === 'request' && m.id !== request.id),
    {
      timeoutMs: 10_000,
      intervalMs: 20,
      failure: () => new Error(`no freeze request (got ${JSON.stringify(agentA.got)})`),
    },
  );
  assert.equal(freeze.type === 'request' && freeze.request.op, 'freeze');
  agentA.send({
    type: 'reply',
    id: (freeze as { id: number }).id,
    result: { instant: new Date().toISOString(), disks: [{ disk: 'vdc', sizeBytes: 4096 }] },
  });
  await assert.rejects(freezing, /froze vdc when asked for vdb/);

  // A data frame for an id never issued on A's connection: A is refused, its waiting reads fail.
  const waiting = assert.rejects(reader.readInto(target, 0, 0, 4096), /answered request 999/);
  await pollFor(
    async () => (agentA.got.filter((m) => m.type === 'request').length === 3 ? true : undefined),
    {
      timeoutMs: 10_000,
      intervalMs: 20,
      failure: () => new Error('the third request never reached A'),
    },
  );
  agentA.sendData(999, Buffer.alloc(4096));
  await refusedWith(agentA, 'bad-message');
  await waiting;
  assert.equal(agentChannel(a.agentId), undefined, "A's refused connection no longer serves reads");
});

test('an agent keeps its id only by proving its credential, never by claiming a machine id', async () => {
  const a = await enroll('ffff0000');
  const b = await enroll('9999ffff');
  const aRecord = await etagOf(agentDoc(a.agentId));
  // Another enrollment claiming A's machine id (a clone, or a token holder elsewhere): a new id.
  const claim = await enroll('ffff0000');
  assert.notEqual(claim.agentId, a.agentId);
  // Naming A's id with another agent's credential proves nothing either.
  const borrowed = await enroll('ffff0000', undefined, { agentId: a.agentId, secret: b.secret });
  assert.notEqual(borrowed.agentId, a.agentId);
  assert.equal(await etagOf(agentDoc(a.agentId)), aRecord, "A's record was not touched");
  const agentA = await hello(a.agentId, a.secret);
  await agentA.next('welcome');

  // A re-enrolled with its own credential (a reinstall): same id, a new credential, the old one
  // refused and its connection closed.
  const again = await enroll('ffff0000', undefined, a);
  assert.equal(again.agentId, a.agentId);
  await agentA.closed;
  await refusedWith(await hello(a.agentId, a.secret), 'agent-unknown');
  const renewed = await hello(again.agentId, again.secret);
  await renewed.next('welcome');
});
