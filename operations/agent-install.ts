// `osr agent install --ssh root@host`: push the Mobility agent onto a machine over SSH and enroll
// it, as ASR's process server pushes its Mobility service. The file set is the compiled agent/
// folder plus this process's own node binary when the machine has no Node 20 (same architecture
// and glibc assumed: the node binary links only glibc, libstdc++ and libgcc_s). Then the agent's
// own `enroll` (which installs its service) runs with a fresh one-time token, and this waits until
// the agent has connected to its process server.
import fs from 'node:fs';
import path from 'node:path';
import { LAUNCHER } from '../agent/launcher';
import { agentBundleDir } from '../lib/agents/bundle-source';
import { probeCommand, probeResult, pushVerified, type PushProbe } from '../lib/ssh/push';
import { HostKeyError, openSsh, parseSshTarget, type SshSession } from '../lib/ssh/session';
import type { AgentVmLink } from '../lib/agents/registry';
import { chooseListener, getAgent, makeAgentToken, type AgentView } from './agents';
import { linkAgentToVm, resolveVm } from './agent-vm';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';

export const AGENT_DIR = '/opt/osr-agent';

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

/** Makes the agent's folder; whether node must be copied (no Node 20 there), and how (push.ts). */
async function prepare(ssh: SshSession, host: string): Promise<PushProbe | undefined> {
  const r = await ssh.run(
    `mkdir -p ${AGENT_DIR}/agent/tracking && uname -m && (node --version 2>/dev/null || echo none); ${probeCommand(`${AGENT_DIR}/node`)}`,
  );
  if (r.code !== 0)
    throw new OperationError(`cannot make ${AGENT_DIR} on ${host}: ${r.stderr.trim()}`, 'invalid');
  const [arch, version] = r.stdout.trim().split('\n');
  if (arch !== 'x86_64' || process.arch !== 'x64')
    throw new OperationError(
      `${host} is ${arch}; the agent's node can be copied only to x86_64: install Node 20 there first`,
      'invalid',
    );
  if (/^v(2\d|[3-9]\d)\./.test(version ?? '')) return undefined;
  const probe = probeResult(r.stdout);
  if (!probe.sha256sum)
    throw new OperationError(
      `${host} has no sha256sum to check the copied node with: install coreutils (or Node 20) there first`,
      'invalid',
    );
  return probe;
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
    const nodeProbe = await prepare(ssh, host);
    if (nodeProbe) {
      // Before any SFTP channel on this session (dropbear: see the enroll below).
      progress(nodeProbe.gzip ? `sending node (gzip'ed) to ${AGENT_DIR}` : `copying node to ${AGENT_DIR}`);
      const how = await pushVerified(
        ssh,
        (use) => withSsh(input, use),
        { local: process.execPath, remote: `${AGENT_DIR}/node`, mode: 0o755 },
        nodeProbe,
        (percent) => progress(`node: ${percent} % sent`),
      ).catch((err: Error) => {
        throw new OperationError(`${host}: ${err.message}`, 'unavailable');
      });
      if (how === 'unchanged') progress(`${AGENT_DIR}/node is already this node (same SHA-256): kept`);
    }
    progress(`copying the agent to ${AGENT_DIR}`);
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
