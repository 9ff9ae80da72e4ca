// The launcher the agent's service runs (/opt/osr-agent/osr-agent): the node beside it, or the
// machine's own, with the agent's V8 flags. `osr agent install` writes it; the agent rewrites it at
// start when it is not this release's, so that an upgrade (which replaces only agent/) brings new
// flags to machines installed before them, and then restarts once to run with them.
import fs from 'node:fs';
import { writeDurably } from './tracking/durable';

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

export const LAUNCHER = `#!/bin/sh
# The Mobility agent of Open Site Recovery: the node beside this file, or the machine's own.
d=$(dirname "$(readlink -f "$0")")
n="$d/node"; [ -x "$n" ] || n=node
exec "$n" ${AGENT_NODE_FLAGS} "$d/agent/main.js" "$@"
`;

/** Rewrites `file` with this release's launcher when it differs, durably; whether it did. */
export function refreshLauncher(file: string): boolean {
  let now: string | undefined;
  try {
    now = fs.readFileSync(file, 'utf8');
  } catch {
    return false; // no launcher (an agent run by hand from its folder): nothing to keep current
  }
  if (now === LAUNCHER) return false;
  writeDurably(file, LAUNCHER, 0o755);
  return true;
}
