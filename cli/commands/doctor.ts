// `osr doctor`: a storage round trip from a worker of every role, through Temporal.
import type { Command } from 'commander';
import { insecureChannels } from '../../lib/config/channel-security';
import { loadConfig } from '../../lib/config/config';
import { CONTAINERS, createBlobServiceClient, storageCredentialProblem } from '../../lib/azure/blob-client';
import { openRoleStorage } from '../../lib/azure/role-storage';
import { connectClient } from '../../operations/temporal-client';
import { CONTROL_TASK_QUEUE } from '../../shared/task-queues';
import type { stackCheck } from '../../workflows/stack-check';
import { EXIT, printJson, printTable } from '../common/output';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check that every worker role polls its task queue and reaches storage')
    .option('--wait <seconds>', 'how long to wait for each worker', '30')
    .option('--json', 'print JSON')
    .action(async (opts: { wait: string; json?: boolean }) => {
      const config = loadConfig();
      // This host's own storage credentials first (a 403 is reported with the fix by main);
      // the workers' are checked by the workflow below, which also reports any other failure.
      if (config.storage.auth === 'key')
        await createBlobServiceClient(config)
          .getContainerClient(CONTAINERS.vault)
          .exists()
          .catch((err: unknown) => {
            if (storageCredentialProblem(err)) throw err;
          });
      else await openRoleStorage(config, 'control').startCheck();
      const client = await connectClient(config);
      const result = await client.workflow.execute<typeof stackCheck>('stackCheck', {
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId: `doctor/${new Date().toISOString()}`,
        args: [{ site: config.site, scheduleToStartSeconds: Number(opts.wait) }],
        workflowExecutionTimeout: '5m',
      });
      await client.connection.close();
      // Channels that would cross a network in clear: not a failure, but said every time.
      const warnings = insecureChannels(config);
      for (const w of warnings) process.stderr.write(`osr: warning: ${w}\n`);
      if (opts.json) printJson({ ...result, warnings });
      else
        printTable(
          result.probes.map((p) => ({
            queue: p.queue,
            ok: p.result ? 'yes' : 'NO',
            host: p.result?.host,
            pid: p.result?.pid,
            ms: p.result?.roundTripMs,
            error: p.error,
          })),
        );
      if (!result.ok) process.exitCode = EXIT.unavailable;
    });
}
