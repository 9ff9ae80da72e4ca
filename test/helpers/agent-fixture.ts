// What the agent tests share: the three workers, with the process server listening for agents on
// loopback, and an agent pushed into a guest over SSH by the CLI, as an operator does.
import assert from 'node:assert/strict';
import type { AgentGuest } from './agent-guest';
import type { CliResult } from './cli';
import type { TestStack } from './test-stack';
import { pollFor } from './poll';

/**
 * A process server's environment for an agent listener on loopback port `port`, which agents are
 * told to dial at `10.0.2.2:<dialPort>` (the host's loopback from a guest; a relay's port, if any).
 */
export function agentListenerEnv(port: number, dialPort = port): NodeJS.ProcessEnv {
  return {
    OSR_AGENT_HOST: '127.0.0.1',
    OSR_AGENT_PORT: String(port),
    OSR_AGENT_ADDRESS: `10.0.2.2:${dialPort}`,
  };
}

/** Control, cloud applier and a process server with an agent listener (agentListenerEnv). */
export async function startAgentWorkers(
  stack: TestStack,
  agentPort: number,
  dialPort = agentPort,
): Promise<void> {
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker('process-server', agentListenerEnv(agentPort, dialPort)),
  ]);
}

/** `osr agent install` into the guest (host key pinned); returns the enrolled agent's id. */
export async function installAgent(
  osr: (args: string[]) => Promise<CliResult>,
  guest: AgentGuest,
): Promise<string> {
  const installed = await osr([
    ...['agent', 'install', '--ssh', guest.sshTarget, '--key', guest.keyFile],
    ...['--host-key-fingerprint', guest.hostKeyFingerprint, '--json'],
  ]);
  assert.equal(installed.code, 0, `${installed.stdout}\n${installed.stderr}`);
  return (JSON.parse(installed.stdout) as { id: string }).id;
}

/**
 * A shell command for the guest: runs `action <pid>` (`kill -9`, `kill -STOP`, or `true` to only
 * list) on the agent's node process and prints its pid. Found by its command line, anchored so the
 * shell running this (whose line holds the pattern too) never matches; V8 flags may stand between
 * node and main.js.
 */
export function onAgentProcess(action: string): string {
  return `for d in /proc/[0-9]*; do if tr '\\0' ' ' <$d/cmdline 2>/dev/null | grep -q '^/opt/osr-agent/node .*/opt/osr-agent/agent/main.js run'; then ${action} \${d#/proc/} && echo \${d#/proc/}; fi; done`;
}

/**
 * Restarts the agent's service in the guest (its init script: TERM, the agent stops cleanly, then a
 * new process) and waits until the new agent is connected: a connection made after the restart.
 */
export async function restartAgent(
  osr: (args: string[]) => Promise<CliResult>,
  guest: AgentGuest,
  agentId: string,
): Promise<void> {
  const restartedAt = Date.now();
  const r = await guest.ssh('/etc/init.d/osr-agent restart', 120_000);
  assert.equal(r.code, 0, r.stderr);
  await pollFor(
    async () => {
      const shown = await osr(['agent', 'show', agentId, '--json']);
      const a = JSON.parse(shown.stdout || '{}') as { state?: string; connectedAt?: string };
      return a.state === 'connected' && Date.parse(a.connectedAt ?? '') >= restartedAt ? true : undefined;
    },
    {
      timeoutMs: 120_000,
      intervalMs: 1000,
      failure: () => new Error(`agent ${agentId} not back within 120 s`),
    },
  );
}
