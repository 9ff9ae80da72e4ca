// `osr approvals`, `osr reject` (and `osr approve <approval id>`, registered with the plan commands):
// failovers and commits waiting for a second identity (operations/approvals.ts). Run locally, the
// CLI acts as the OS user; the requester cannot decide their own request.
import type { Command } from 'commander';
import { listApprovals } from '../../operations/approvals';
import { approveRequest, rejectRequest } from '../../operations/approval-run';
import type { ApprovalStatus } from '../../shared/contracts/approval';
import { withContext } from '../common/context';
import { CliError, EXIT, printJson, printTable } from '../common/output';

const shortTime = (iso?: string) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');

function describe(s: ApprovalStatus): string {
  const by = s.decidedBy ? ` by ${s.decidedBy}` : '';
  const outcome = s.job ? `; started ${s.job}` : s.error ? `; it could not run: ${s.error}` : '';
  return `${s.request.kind} of ${s.request.target} (asked by ${s.request.requestedBy}): ${s.state}${by}${outcome}\n`;
}

export async function decideApproval(id: string, approve: boolean, o: { note?: string; json?: boolean }) {
  const status = await withContext((ctx) => (approve ? approveRequest : rejectRequest)(ctx, id, o.note));
  if (o.json) return printJson(status);
  process.stdout.write(describe(status));
  // Approved but the request could not run (e.g. the plan changed since): the decision stands.
  if (status.error) throw new CliError(`the approved request did not run: ${status.error}`, EXIT.failure);
}

export function registerApprovalCommands(program: Command): void {
  program
    .command('approvals')
    .description(
      'failovers and commits waiting for a second identity: `osr approve <id>` or `osr reject <id>`',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await withContext((ctx) => listApprovals(ctx));
      if (o.json) return printJson(list);
      printTable(
        list.map((a) => ({
          id: a.id,
          kind: a.request.kind,
          target: a.request.target,
          asked_by: a.request.requestedBy,
          asked: shortTime(a.request.requestedAt),
          expires: shortTime(a.request.expiresAt),
          state: a.state,
        })),
      );
    });
  program
    .command('reject <id>')
    .description(
      'reject a failover or commit another identity asked for (<id>: approval/…, see `osr approvals`)',
    )
    .option('--note <text>', 'why, kept with the request')
    .option('--json', 'print JSON')
    .action((id: string, o: { note?: string; json?: boolean }) => decideApproval(id, false, o));
}
