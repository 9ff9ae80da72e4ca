// A process-server worker: for this site (no --host), or for the hosts it is started for
// (`--host <name>`, repeated, or OSR_PROCESS_SERVER_HOSTS=a,b): then it polls only those hosts'
// queues, since only it sees their machines. Scale out by starting more of either kind.
import { createDataPathDeps } from '../activities/deps';
import { createProcessServerActivities } from '../activities/process-server';
import { createMasterTargetActivities } from '../activities/master-target';
import { startAgentListener, type AgentListener } from '../lib/agents/listener';
import { checkName } from '../shared/names';
import {
  agentListenerQueue,
  agentMasterTargetQueue,
  hostProcessServerQueue,
  processServerQueue,
  servesRecoverySite,
} from '../shared/task-queues';
import { main } from './run-worker';

/** The hosts named by `--host` (repeatable) and OSR_PROCESS_SERVER_HOSTS, each checked once. */
function servedHosts(argv: string[], env: NodeJS.ProcessEnv): string[] {
  const hosts: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--host') hosts.push(argv[++i] ?? '');
    else if (a.startsWith('--host=')) hosts.push(a.slice('--host='.length));
  }
  for (const h of (env.OSR_PROCESS_SERVER_HOSTS ?? '').split(',')) if (h.trim()) hosts.push(h.trim());
  return [...new Set(hosts.map((h) => checkName('host', h)))];
}

const hosts = servedHosts(process.argv.slice(2), process.env);
/** This server's agent listener, once started: it also polls that listener's own queue. */
let agents: AgentListener | undefined;

main({
  role: 'process-server',
  hosts,
  taskQueue: (config) => (hosts[0] ? hostProcessServerQueue(hosts[0]) : processServerQueue(config.site)),
  // setup runs first, so the listener's address is known here.
  extraTaskQueues: (config) => [
    ...(hosts.length
      ? hosts.slice(1).map(hostProcessServerQueue)
      : // Reprotect: the recovery site's process-server role (same code, the recovery site's queue).
        servesRecoverySite(config)
        ? [processServerQueue(config.recoverySite)]
        : []),
    // Work that needs one of this server's agents' connections (workflows/lib/agent-queue.ts).
    ...(agents ? [agentListenerQueue(agents.address)] : []),
  ],
  setup: async (config, log) => {
    const deps = await createDataPathDeps(config, log, 'process-server');
    // Mobility agents dial out to this listener (agents.port 0: none). A port another process
    // server of this machine holds is logged, not fatal: the agents of that one are served there.
    if (config.agents.port !== 0)
      agents = await startAgentListener({
        vault: deps.vault,
        ...config.agents,
        stateDir: config.stateDir,
        log,
      }).catch((err: Error) => {
        log.error(
          `agent listener not started on ${config.agents.host}:${config.agents.port}: ${err.message} (set agents.port, or 0 for none)`,
        );
        return undefined;
      });
    return {
      activities: createProcessServerActivities(deps),
      // Failback into its agents' machines: the master target that writes through their connections.
      more: agents
        ? [
            {
              taskQueue: agentMasterTargetQueue(agentListenerQueue(agents.address)),
              activities: createMasterTargetActivities(deps),
            },
          ]
        : [],
      close: async () => {
        await agents?.close();
        await deps.pipeline.destroy();
      },
    };
  },
});
