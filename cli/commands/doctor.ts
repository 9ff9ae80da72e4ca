// `osr doctor`: a storage round trip from a worker of every role, through Temporal.
import type { Command } from 'commander';
import { loadConfig } from '../../shared/config';
import { connectClient } from '../../shared/temporal-client';
import { CONTROL_TASK_QUEUE } from '../../shared/task-queues';
import type { stackCheck } from '../../workflows/stack-check';
import { EXIT, printJson, printTable } from '../output';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check that every worker role polls its task queue and reaches storage')
    .option('--wait <seconds>', 'how long to wait for each worker', '30')
    .option('--json', 'print JSON')
    .action(async (opts: { wait: string; json?: boolean }) => {
      const config = loadConfig();
      const client = await connectClient(config);
      const result = await client.workflow.execute<typeof stackCheck>('stackCheck', {
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId: `doctor/${new Date().toISOString()}`,
        args: [{ site: config.site, scheduleToStartSeconds: Number(opts.wait) }],
        workflowExecutionTimeout: '5m',
      });
      await client.connection.close();
      if (opts.json) printJson(result);
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
