// The Mobility agent's first slice, with the real parts: the agent test guest booted under QEMU
// (reached only over SSH, like a machine on the network), a real process-server worker with its
// agent listener, Temporal and Azurite. `osr agent install --ssh` pushes the agent over SFTP and
// node gzip'ed and checked (lib/ssh/push.ts), enrolls it with a one-time token, and the agent
// shows with the guest's disks; a restart of the process server is survived; wrong host keys and
// spent or expired tokens are refused.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort } from '../../lib/process/ports';
import { stopPid, type RunningProcess } from '../../lib/process/managed-process';
import { agentListenerEnv } from '../helpers/agent-fixture';
import { startAgentGuest, type AgentGuest } from '../helpers/agent-guest';
import { assertRefused, cliFor } from '../helpers/cli';
import { pollFor } from '../helpers/poll';
import { startTestStack, type TestStack } from '../helpers/test-stack';

const MiB = 1024 * 1024;
const DISKS = [64 * MiB, 24 * MiB];
let stack: TestStack;
let guest: AgentGuest;
let processServer: RunningProcess;
let agentPort: number;
const osr = cliFor(() => stack.env);

interface AgentJson {
  id: string;
  state: string;
  connectedAt?: string;
  facts: {
    hostname: string;
    machineId: string;
    disks: Array<{ name: string; sizeBytes: number; serial?: string }>;
  };
}

async function agents(): Promise<AgentJson[]> {
  const r = await osr(['agent', 'list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AgentJson[];
}

const startProcessServer = () =>
  stack.startWorker('process-server', {
    ...agentListenerEnv(agentPort),
    // A sign of life each heartbeat (15 s), not each minute: the uninstall test waits on one.
    OSR_AGENT_SEEN_SECONDS: '1',
  });

before(async () => {
  agentPort = await freePort();
  [stack, guest] = await Promise.all([
    startTestStack(),
    startAgentGuest({ hostname: 'web-7', diskSizes: DISKS, bootTimeoutMs: 240_000 }),
  ]);
  processServer = await startProcessServer();
});

after(async () => {
  await guest?.stop();
  await stack?.stop();
});

test('an unknown or wrong SSH host key is refused before anything is copied', async () => {
  const unknown = await osr(['agent', 'install', '--ssh', guest.sshTarget, '--key', guest.keyFile]);
  assertRefused(unknown, 2, /host key SHA256:\S+, which is not known/);
  // The message shows the key the guest really has (made at build), for the operator to check.
  assert.ok(unknown.stderr.includes(`--host-key-fingerprint ${guest.hostKeyFingerprint}`), unknown.stderr);
  const wrong = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
  const refused = await osr([
    'agent',
    'install',
    '--ssh',
    guest.sshTarget,
    '--key',
    guest.keyFile,
    '--host-key-fingerprint',
    wrong,
  ]);
  assertRefused(
    refused,
    2,
    new RegExp(
      `showed host key ${guest.hostKeyFingerprint.replace(/[+/]/g, '\\$&')}, not the expected ${wrong}`,
    ),
  );
  const there = await guest.ssh('ls /opt/osr-agent 2>&1 || true');
  assert.match(there.stdout, /No such file/);
  assert.deepEqual(await agents(), []);
});

test('osr agent install enrolls the guest: listed with its disks and sizes, and in osr discover', async () => {
  const r = await osr([
    'agent',
    'install',
    '--ssh',
    guest.sshTarget,
    '--key',
    guest.keyFile,
    '--host-key-fingerprint',
    guest.hostKeyFingerprint,
  ]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  // node went gzip'ed through one command (the guest has busybox's gzip and sha256sum), checked
  // and renamed into place: nothing half-copied is left beside it.
  assert.match(r.stderr, /sending node \(gzip'ed\)[\s\S]*node: 90 % sent[\s\S]*copying the agent/);
  assert.deepEqual((await guest.ssh('ls /opt/osr-agent')).stdout.split('\n').filter(Boolean), [
    'agent',
    'node',
    'osr-agent',
  ]);
  const [agent, ...others] = await agents();
  assert.equal(others.length, 0);
  assert.ok(agent);
  assert.equal(agent.state, 'connected');
  assert.equal(agent.facts.hostname, 'web-7');
  // The guest's own view, read over SSH: its machine id, and each virtio disk by serial with its size.
  const machineId = (await guest.ssh('cat /etc/machine-id')).stdout.trim();
  assert.equal(agent.facts.machineId, machineId);
  assert.deepEqual(
    agent.facts.disks.map((d) => ({ serial: d.serial, sizeBytes: d.sizeBytes })),
    DISKS.map((sizeBytes, i) => ({ serial: `disk${i}`, sizeBytes })),
  );
  // Installed as a service (the guest has no systemd: the init script and its supervising loop).
  assert.match((await guest.ssh('/etc/init.d/osr-agent status')).stdout, /running/);
  const discovered = await osr(['discover', '--json']);
  assert.equal(discovered.code, 0, discovered.stderr);
  const machine = (
    JSON.parse(discovered.stdout) as {
      machines: Array<{ host: string; name: string; disks: Array<{ diskId: string; sizeBytes: number }> }>;
    }
  ).machines.find((m) => m.host === 'agent' && m.name === 'web-7');
  assert.deepEqual(
    machine?.disks.map((d) => d.sizeBytes),
    DISKS,
  );
});

test('the agent reconnects by itself after its process server restarts', async () => {
  const [before] = await agents();
  assert.ok(before?.connectedAt);
  await stopPid(processServer.pid, 20_000);
  // The stopped listener said so in the vault; the agent keeps trying in the background.
  assert.equal((await agents())[0]?.state, 'disconnected');
  processServer = await startProcessServer();
  const again = await pollFor(
    async () => {
      const [a] = await agents();
      return a?.state === 'connected' &&
        Date.parse(a.connectedAt ?? '') > Date.parse(before.connectedAt ?? '')
        ? a
        : undefined;
    },
    {
      timeoutMs: 120_000,
      intervalMs: 1000,
      failure: (last) => new Error(`the agent did not connect again within 120 s (${String(last)})`),
    },
  );
  assert.equal(again.id, before.id);
  // The same agent process: it reconnected, the supervising loop did not have to restart it.
  assert.match((await guest.ssh('grep -c "connected to" /var/log/osr-agent.log')).stdout.trim(), /^[2-9]$/);
});

test('osr agent uninstall: the agent is refused at its next contact and its service stops itself', async () => {
  const [agent] = await agents();
  assert.ok(agent);
  const r = await osr(['agent', 'uninstall', agent.id]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await agents(), []);
  // Its listener's next sign-of-life write (each heartbeat here, agents.seenWriteSeconds) finds
  // the record gone.
  await pollFor(
    async () =>
      (await guest.ssh('/etc/init.d/osr-agent status')).stdout.includes('stopped') ? true : undefined,
    {
      timeoutMs: 150_000,
      intervalMs: 3000,
      failure: (last) => new Error(`the agent's service did not stop within 150 s (${String(last)})`),
    },
  );
  assert.match((await guest.ssh('tail -n 3 /var/log/osr-agent.log')).stdout, /not enrolled|uninstalled/);
});

test('an expired token and a used token are refused by the listener', async () => {
  // The shortest lifetime is 10 s: the used and unknown tokens are tried while it runs out.
  const expiring = JSON.parse((await osr(['agent', 'token', '--expires', '10s', '--json'])).stdout) as {
    token: string;
    expiresAt: string;
    server: string;
    fingerprint: string;
  };
  const enroll = (token: string) =>
    guest.ssh(
      `OSR_AGENT_STATE=/tmp/enroll-test.json /opt/osr-agent/osr-agent enroll --server ${expiring.server} --token ${token} --fingerprint ${expiring.fingerprint} --no-service`,
    );
  const fresh = JSON.parse((await osr(['agent', 'token', '--json'])).stdout) as { token: string };
  assert.equal((await enroll(fresh.token)).code, 0);
  const reused = await enroll(fresh.token);
  assert.equal(reused.code, 78, reused.stderr);
  assert.match(reused.stderr, /already used .*web-7/);
  const unknown = await enroll('osrat_not-a-token');
  assert.equal(unknown.code, 78);
  assert.match(unknown.stderr, /not known/);

  // Expiry is a moment on the clock: wait until it has passed.
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(expiring.expiresAt) - Date.now()) + 500));
  const expired = await enroll(expiring.token);
  assert.equal(expired.code, 78, expired.stderr);
  assert.match(expired.stderr, /expired at .*make a new one with `osr agent token`/);
});
