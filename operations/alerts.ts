// Current alerts across OSR, in one list: each protected machine's alerts (from its protectMachine
// status query), recovery jobs that failed (drills, cleanups, failovers, plans) in the last 24 h,
// drills whose boot check failed, and the process servers' own alerts (memory or backlog
// pressure) or silence (stale heartbeat). Every alert has a global id that stays the same while
// the condition lasts: the webhook notifier sends each id once.
import { listServers } from '../lib/observability/server-health';
import { rejectionCounts, type RejectingParser, type RejectionCount } from '../lib/observability/rejections';
import { RECOVERY_JOB_KINDS } from '../shared/job-kinds';
import type { RecoveredMachine } from '../shared/recovery-types';
import { OSR_JOB_KIND, OSR_MACHINE, OSR_PLAN } from '../shared/search-attributes';
import type { ControlContext } from './context';
import { groupAlerts } from './health';
import { listMachines, type MachineOverview } from './machines';

export interface OsrAlert {
  /**
   * Global and stable: machine:<machine>:<id>, machine:<machine>:ended:<closeTime>,
   * group:<group>:<id>, job:<workflowId>, drill-boot:<machine>:<job>, server:<server>:<id>.
   */
  id: string;
  source: 'machine' | 'group' | 'job' | 'server';
  kind: string;
  severity: 'warning' | 'critical';
  /** When the condition began. */
  at: string;
  message: string;
  /** How many times the problem was seen, and when last (one alert per problem). */
  count?: number;
  lastAt?: string;
  machine?: string;
  /** A consistency group's alert: the group, and its members (`machines`). */
  group?: string;
  machines?: string[];
  plan?: string;
  workflowId?: string;
  server?: string;
}

export const FAILED_JOB_WINDOW_HOURS = 24;

export interface AlertList {
  alerts: OsrAlert[];
  /** Sources that could not be read (the list is then partial). */
  problems: string[];
}

/** Every current alert, newest first. `machines`: statuses already read (saves querying twice). */
export async function listAlerts(ctx: ControlContext, machines?: MachineOverview[]): Promise<AlertList> {
  const problems: string[] = [];
  const guard = async <T>(what: string, read: () => Promise<T[]>): Promise<T[]> => {
    try {
      return await read();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
      return [];
    }
  };
  const parts = await Promise.all([
    guard('machines', async () => machineAlerts(machines ?? (await listMachines(ctx)))),
    guard('groups', async () =>
      (await groupAlerts(ctx)).map(({ group, alert: a }) => ({
        id: `group:${group.name}:${a.id}`,
        source: 'group' as const,
        kind: `group-${a.kind}`,
        severity: a.severity,
        at: a.at,
        message: `group ${group.name} (${group.machines.join(', ')}): ${a.message}`,
        count: a.count,
        lastAt: a.lastAt,
        group: group.name,
        machines: group.machines,
      })),
    ),
    guard('recovery jobs', () => failedJobAlerts(ctx)),
    guard('drill records', () => bootCheckAlerts(ctx)),
    guard('servers', () => serverAlerts(ctx)),
  ]);
  const alerts = parts.flat().sort((a, b) => b.at.localeCompare(a.at) || a.id.localeCompare(b.id));
  return { alerts, problems };
}

function machineAlerts(machines: MachineOverview[]): OsrAlert[] {
  const out: OsrAlert[] = [];
  for (const m of machines) {
    // Protection ended (workflow cancelled, terminated, failed or timed out while still registered).
    if (m.ended)
      out.push({
        id: `machine:${m.machine}:ended:${m.ended.closedAt ?? m.ended.closedAs}`,
        source: 'machine',
        kind: 'protection-ended',
        severity: 'critical',
        at: m.ended.closedAt ?? new Date().toISOString(),
        message: `${m.machine}: ${m.ended.reason}. Fix: ${m.ended.fix}`,
        machine: m.machine,
        workflowId: m.ended.workflowId,
      });
    for (const a of m.status?.alerts ?? []) {
      // A group's alerts are listed once, as the group's (source group), not once per member.
      if (a.kind === 'group-cut-failed' || a.kind === 'group-cut-skipped') continue;
      out.push({
        id: `machine:${m.machine}:${a.id}`,
        source: 'machine',
        kind: a.kind,
        severity: a.severity,
        at: a.at,
        message: `${m.machine}: ${a.message}`,
        count: a.count,
        lastAt: a.lastAt,
        machine: m.machine,
      });
    }
  }
  return out;
}

async function failedJobAlerts(ctx: ControlContext): Promise<OsrAlert[]> {
  const since = new Date(Date.now() - FAILED_JOB_WINDOW_HOURS * 3600_000).toISOString();
  const query =
    `OsrJobKind IN (${RECOVERY_JOB_KINDS.map((k) => `'${k}'`).join(', ')}) AND StartTime > '${since}'` +
    ` AND (ExecutionStatus IN ('Failed', 'TimedOut', 'Terminated') OR OsrState = 'failed')`;
  const client = await ctx.client();
  const out: OsrAlert[] = [];
  for await (const wf of client.workflow.list({ query })) {
    const attrs = wf.typedSearchAttributes;
    const kind = attrs.get(OSR_JOB_KIND) ?? 'job';
    const machine = attrs.get(OSR_MACHINE);
    const plan = attrs.get(OSR_PLAN);
    const what = plan && !machine ? `plan ${plan}` : (machine ?? wf.workflowId);
    const summary = typeof wf.memo?.summary === 'string' ? ` (${wf.memo.summary})` : '';
    out.push({
      id: `job:${wf.workflowId}`,
      source: 'job',
      kind: `${kind}-failed`,
      severity: /^(plan-)?(failover|failback)$/.test(kind) ? 'critical' : 'warning',
      at: (wf.closeTime ?? wf.startTime).toISOString(),
      message: `${kind} of ${what} ${wf.status.name === 'RUNNING' ? 'failed' : wf.status.name.toLowerCase()}${summary}; see GET /v1/jobs/${encodeURIComponent(wf.workflowId)} or the Temporal Web UI`,
      machine,
      plan,
      workflowId: wf.workflowId,
    });
    if (out.length >= 100) break;
  }
  return out;
}

async function bootCheckAlerts(ctx: ControlContext): Promise<OsrAlert[]> {
  const records = await ctx.vault.list<RecoveredMachine>('recovered/');
  return records
    .filter((r) => r.kind === 'drill' && r.bootCheck && !r.bootCheck.ok)
    .map((r) => ({
      id: `drill-boot:${r.machine}:${r.job}`,
      source: 'job' as const,
      kind: 'drill-boot-check-failed',
      severity: 'warning' as const,
      at: r.createdAt,
      message: `drill ${r.job} of ${r.machine}: the boot check failed (${r.bootCheck?.reason ?? 'probe never succeeded'})`,
      machine: r.machine,
    }));
}

const PARSER_FIX: Record<RejectingParser, string> = {
  segment: 'segments in osr-cache were altered or written by another key or release; the cycle is sent again',
  nbd: 'the NBD server of the source sent replies OSR cannot parse; check the QEMU version and what listens on that socket',
  qmp: 'the QMP monitor sent what OSR cannot parse; check that --qmp names the QMP monitor of the VM or storage daemon',
  'http-body': 'clients of osr serve sent bodies it refused (each got a 4xx); check the callers',
};

/** Refused input, folded per parser and kind: one alert with a count, warning only (nothing was lost). */
function rejectionAlert(server: string, who: string, r: RejectionCount): OsrAlert {
  return {
    id: `server:${server}:rejected-${r.parser}-${r.kind}`,
    source: 'server',
    kind: 'input-rejected',
    severity: 'warning',
    at: r.lastAt,
    count: r.count,
    lastAt: r.lastAt,
    message: `${who} refused ${r.count} ${r.parser} input(s) as ${r.kind} (last: ${r.lastDetail}): ${PARSER_FIX[r.parser]}`,
    server,
  };
}

async function serverAlerts(ctx: ControlContext): Promise<OsrAlert[]> {
  const out: OsrAlert[] = [];
  // This process's own refusals (osr serve: request bodies).
  for (const r of rejectionCounts()) out.push(rejectionAlert('api', 'osr serve', r));
  for (const s of await listServers(ctx.vault, ctx.config)) {
    if (s.stale)
      out.push({
        id: `server:${s.id}:stale`,
        source: 'server',
        kind: 'server-stale',
        severity: s.role === 'control' || s.role === 'process-server' ? 'critical' : 'warning',
        at: s.at,
        message: `${s.role} worker on ${s.host} (pid ${s.pid}) has sent no heartbeat for ${s.ageSeconds} s: it is stopped, hung or cannot reach storage`,
        server: s.id,
      });
    for (const r of s.rejections ?? []) out.push(rejectionAlert(s.id, `${s.role} worker on ${s.host}`, r));
    if (!s.stale)
      for (const a of s.alerts)
        out.push({
          id: `server:${s.id}:${a.id}`,
          source: 'server',
          kind: a.kind,
          severity: a.severity,
          at: a.at,
          message: a.message,
          server: s.id,
        });
  }
  return out;
}
