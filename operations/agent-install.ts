// `osr agent install --ssh root@host`: push the Mobility agent onto a machine over SSH and enroll
// it, as ASR's process server pushes its Mobility service. The file set is the compiled agent/
// folder plus this process's own node binary when the machine has no Node 20 (same architecture
// and glibc assumed: the node binary links only glibc, libstdc++ and libgcc_s). Then the agent's
// own `enroll` (which installs its service) runs with a fresh one-time token, and this waits until
// the agent has connected to its process server.
import fs from 'node:fs';
import path from 'node:path';
import { agentBundleDir } from '../lib/agents/bundle-source';
import { HostKeyError, openSsh, parseSshTarget, type SshSession } from '../lib/ssh/session';
import type { AgentVmLink } from '../lib/agents/registry';
import { chooseListener, getAgent, makeAgentToken, type AgentView } from './agents';
import { linkAgentToVm, resolveVm } from './agent-vm';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export const AGENT_DIR = '/opt/osr-agent';
/**
 * V8 flags of the agent's node, measured in BENCHMARKS.md ("The agent's memory"): a 1 MiB young
 * generation (the default grows to 16 MiB a semi-space; the agent's data lives in Buffers outside
 * V8's heap), and `gc` exposed so the agent frees its compressor's dead buffers every 2 MiB
 * (agent/heap.ts: 15 MiB less at peak). Tried and left out: --lite-mode (6 MiB less, twice the
 * agent's CPU per MB sent: the entropy sampling runs interpreted), --max-old-space-size (a hard
 * bound would crash the agent on a large disk's change list, which is JSON in V8's heap),
 * MALLOC_ARENA_MAX=2 and --v8-pool-size=1 (under 1 MiB each).
 */
export const AGENT_NODE_FLAGS = '--max-semi-space-size=1 --expose-gc';

const LAUNCHER = `#!/bin/sh
# The Mobility agent of Open Site Recovery: the node beside this file, or the machine's own.
d=$(dirname "$(readlink -f "$0")")
n="$d/node"; [ -x "$n" ] || n=node
exec "$n" ${AGENT_NODE_FLAGS} "$d/agent/main.js" "$@"
`;

export interface AgentInstallInput {
  /** user@host[:port]; with `vm`, overrides the guest IP vCenter reports (a NAT'd or stand-in guest). */
  ssh?: string;
  /** `<vcenter-host>/<vm-name>`: a VMware VM, reached at its guest IP unless `ssh` is given. */
  vm?: string;
  privateKey: Buffer;
  hostKeyFingerprint?: string;
  /** The listener the agent should dial (default: the only one). */
  server?: string;
  waitSeconds?: number;
  onProgress?: (step: string) => void;
}

/** The compiled agent this release ships (the .js files of dist/agent and its folders), relative to it. */
function agentFiles(bundleDir?: string): { dir: string; files: string[] } {
  const dir = agentBundleDir(bundleDir);
  const files = fs.existsSync(dir)
    ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.js'))
    : [];
  if (!files.includes('main.js'))
    throw new OperationError(
      `the compiled agent is missing in ${dir}: build OSR first (\`npm run build\`)`,
      'unavailable',
    );
  return { dir, files };
}

/** Makes the agent's folder; whether node must be copied (no Node 20 there). */
async function prepare(ssh: SshSession, host: string): Promise<boolean> {
  const r = await ssh.run(
    `mkdir -p ${AGENT_DIR}/agent/tracking && uname -m && (node --version 2>/dev/null || true)`,
  );
  if (r.code !== 0)
    throw new OperationError(`cannot make ${AGENT_DIR} on ${host}: ${r.stderr.trim()}`, 'invalid');
  const [arch, version] = r.stdout.trim().split('\n');
  if (arch !== 'x86_64' || process.arch !== 'x64')
    throw new OperationError(
      `${host} is ${arch}; the agent's node can be copied only to x86_64: install Node 20 there first`,
      'invalid',
    );
  return !/^v(2\d|[3-9]\d)\./.test(version ?? '');
}

/** The --ssh target, or bad input naming the form it must have (exit 2, before anything is done). */
function sshTarget(text: string): ReturnType<typeof parseSshTarget> {
  try {
    return parseSshTarget(text);
  } catch (err) {
    throw new OperationError(`--ssh ${(err as Error).message}`, 'invalid');
  }
}

/** One SSH session for `use`, closed after; a refused host key is bad input (exit 2). */
async function withSsh<T>(
  input: AgentInstallInput & { ssh: string },
  use: (ssh: SshSession) => Promise<T>,
): Promise<T> {
  let ssh: SshSession;
  try {
    ssh = await openSsh(parseSshTarget(input.ssh), input.privateKey, input.hostKeyFingerprint);
  } catch (err) {
    throw new OperationError((err as Error).message, err instanceof HostKeyError ? 'invalid' : 'unavailable');
  }
  try {
    return await use(ssh);
  } finally {
    ssh.close();
  }
}

async function install(ctx: ControlContext, given: AgentInstallInput): Promise<AgentView> {
  if (given.ssh !== undefined) sshTarget(given.ssh); // bad input before anything is asked
  let vmLink: AgentVmLink | undefined;
  let ssh = given.ssh;
  if (given.vm) ({ ssh, link: vmLink } = await resolveVm(ctx, given.vm, given.ssh));
  if (!ssh)
    throw new OperationError(
      'say which machine: --ssh root@<address>, or --vm <vcenter-host>/<vm-name>',
      'invalid',
    );
  const input = { ...given, ssh };
  const agent = await pushAndEnroll(ctx, input);
  if (!vmLink) return agent;
  await linkAgentToVm(ctx, agent.id, vmLink);
  return getAgent(ctx, agent.id);
}

async function pushAndEnroll(
  ctx: ControlContext,
  input: AgentInstallInput & { ssh: string },
): Promise<AgentView> {
  const { host } = sshTarget(input.ssh);
  const progress = input.onProgress ?? (() => undefined);
  const listener = await chooseListener(ctx, input.server);
  const files = agentFiles(ctx.config.agents.bundleDir);
  progress(`connecting to ${input.ssh}`);
  await withSsh(input, async (ssh) => {
    const copyNode = await prepare(ssh, host);
    progress(`copying the agent${copyNode ? ' and node' : ''} to ${AGENT_DIR}`);
    const launcher = path.join(fs.mkdtempSync(path.join(ctx.config.stateDir, 'agent-')), 'osr-agent');
    fs.writeFileSync(launcher, LAUNCHER);
    try {
      await ssh.put([
        ...files.files.map((f) => ({
          local: path.join(files.dir, f),
          remote: `${AGENT_DIR}/agent/${f.split(path.sep).join('/')}`,
          mode: 0o644,
        })),
        { local: launcher, remote: `${AGENT_DIR}/osr-agent`, mode: 0o755 },
        ...(copyNode ? [{ local: process.execPath, remote: `${AGENT_DIR}/node`, mode: 0o755 }] : []),
      ]);
    } finally {
      fs.rmSync(path.dirname(launcher), { recursive: true, force: true });
    }
  });
  const { token, fingerprint } = await makeAgentToken(ctx, { ttlSeconds: 600, server: listener.address });
  progress(`enrolling with ${listener.address}`);
  const started = Date.now();
  // A session of its own: dropbear answered an exec after an SFTP channel on the same session
  // with a failure once (the command had run), so the step that spends the token starts clean.
  const r = await withSsh(input, (ssh) =>
    ssh.run(
      `${AGENT_DIR}/osr-agent enroll --server ${listener.address} --token ${token} --fingerprint ${fingerprint}`,
    ),
  );
  if (r.code !== 0)
    throw new OperationError(
      `the agent did not enroll on ${host}: ${(r.stderr || r.stdout).trim()}`,
      'unavailable',
    );
  const id = /enrolled as (ag-[0-9a-f]{12})/.exec(r.stdout)?.[1];
  if (!id) throw new OperationError(`the agent's enroll said: ${r.stdout.trim()}`, 'unavailable');
  progress(`${id} enrolled; waiting for its service to connect`);
  const waitSeconds = input.waitSeconds ?? 180;
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const agent = await getAgent(ctx, id);
    if (agent.state === 'connected' && Date.parse(agent.connectedAt ?? '') >= started - 1000) return agent;
    if (Date.now() > deadline)
      throw new OperationError(
        `${id} enrolled but its service has not connected to ${listener.address} within ${waitSeconds} s: see /var/log/osr-agent.log (or journalctl -u osr-agent) on ${host}`,
        'unavailable',
      );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export const installAgent = audited('agent.install', install, (_ctx, input) => ({
  target: input.vm ?? input.ssh ?? '',
  details: {
    server: input.server,
    hostKey: input.hostKeyFingerprint,
    ...(input.vm ? { ssh: input.ssh } : {}),
  },
}));
