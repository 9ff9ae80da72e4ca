// `osr demo start|stop`: a demo machine (qemu-storage-daemon + workload) protected by OSR.
import path from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../lib/config/config';
import { startDemoMachine, stopDemoMachines } from '../../stack/demo/demo-machine';
import * as failover from '../../operations/failover';
import * as machines from '../../operations/machines';
import { OperationError } from '../../operations/context';
import { createPolicy, listPolicies } from '../../operations/policies';
import { protectWorkflowId } from '../../shared/contracts/protect-machine';
import { parseDuration } from '../../shared/policy';
import { withContext } from '../common/context';

export function registerDemoCommands(program: Command): void {
  const demo = program
    .command('demo')
    .description('a demo machine: a qemu-storage-daemon disk with a workload, protected by OSR');
  demo
    .command('start')
    .description(
      'create and start the demo machine, and protect it with the "demo" policy (a point every 15 s)',
    )
    .option('--name <name>', 'machine name', 'demo-web-1')
    .option('--size <bytes>', 'disk size (e.g. 1G)', '1G')
    .option('--rate <records>', 'workload: 4 KiB records per second', '64')
    .action(async (o: { name: string; size: string; rate: string }) => {
      const config = loadConfig();
      const size = parseSize(o.size);
      const source = await startDemoMachine(config, o.name, {
        sizeBytes: size,
        rate: Number(o.rate),
        workloadEntry: path.join(__dirname, '..', '..', 'stack', 'demo', 'demo-workload.js'),
      });
      process.stdout.write(`demo machine ${o.name}: disk ${source.disk}, QMP ${source.qmpSocket}\n`);
      await withContext(async (ctx) => {
        if (!(await listPolicies(ctx)).some((p) => p.name === 'demo')) {
          await createPolicy(ctx, {
            name: 'demo',
            crashPointSeconds: parseDuration('15s', 'demo'),
            appPointSeconds: 0,
            rpoThresholdSeconds: 120,
            keepAllMinutes: 60,
          });
        }
        try {
          await machines.protect(ctx, {
            name: o.name,
            qmpSocket: source.qmpSocket,
            nbdSocket: source.nbdSocket,
            policy: 'demo',
          });
          process.stdout.write(`protecting ${o.name} (workflow ${protectWorkflowId(o.name)})\n`);
          // Drills of the demo show the whole promise: the disk comes up (a local copy served by a
          // storage daemon) and its application replays its journal before the probe says up.
          const app = `'${process.execPath}' '${path.join(__dirname, '..', '..', 'stack', 'demo', 'demo-app.js')}'`;
          await failover.configureRecovery(ctx, o.name, {
            materialize: { format: 'qcow2' },
            bootCheck: { command: `exec ${app} boot`, probe: `${app} probe`, probeTimeoutSeconds: 120 },
          });
        } catch (err) {
          if (!(err instanceof OperationError && err.code === 'conflict')) throw err;
          process.stdout.write(`${o.name} is already protected\n`);
        }
      });
    });
  demo
    .command('stop')
    .description('unprotect the demo machines and stop their workload and storage daemon')
    .action(async () => {
      const config = loadConfig();
      await withContext(async (ctx) => {
        for (const m of await ctx.vault.machines()) {
          if (m.source.type !== 'qemu' || !m.source.qmpSocket.includes(`${path.sep}demo${path.sep}`))
            continue;
          await machines
            .unprotect(ctx, m.name)
            .catch((err: Error) => process.stderr.write(`${m.name}: ${err.message}\n`));
        }
      });
      const stopped = await stopDemoMachines(config);
      process.stdout.write(`stopped: ${stopped.join(', ') || 'nothing was running'}\n`);
    });
}

function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text.trim());
  if (!m) throw new OperationError(`--size "${text}" is not a size; write e.g. 512M or 1G`, 'invalid');
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[
    (m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'
  ];
  return Number(m[1]) * mult;
}
