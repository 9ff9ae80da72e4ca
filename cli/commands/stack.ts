// `osr stack up|down|status|reset`: the embedded Temporal dev server, Azurite and the OSR workers.
import path from 'node:path';
import readline from 'node:readline/promises';
import type { Command } from 'commander';
import { loadConfig } from '../../lib/config/config';
import {
  resettablePaths,
  stackDown,
  stackReset,
  stackStatus,
  stackUp,
  type ComponentStatus,
} from '../../stack/stack';
import { EXIT, CliError, printJson, printTable } from '../common/output';

const workersDir = path.join(__dirname, '..', '..', 'workers');

function printStackTable(status: ComponentStatus[]): void {
  printTable(status as unknown as Array<Record<string, unknown>>, [
    'name',
    'state',
    'pid',
    'address',
    'detail',
  ]);
}

export function registerStackCommands(program: Command): void {
  const stack = program
    .command('stack')
    .description(
      'start, stop and report the embedded stack (Temporal dev server + Web UI, Azurite, OSR workers)',
    );
  stack
    .command('up')
    .description('start every part that is not running yet, then print the status')
    .option('--json', 'print the status as JSON')
    .action(async (opts: { json?: boolean }) => {
      const config = loadConfig();
      const status = await stackUp(config, {
        workersDir,
        onProgress: (m) => !opts.json && process.stderr.write(`${m}\n`),
      });
      if (opts.json) printJson(status);
      else {
        printStackTable(status);
        const ui = status.find((s) => s.name === 'temporal-ui');
        if (ui?.address)
          process.stdout.write(
            `\nTemporal Web UI: ${ui.address}/namespaces/${config.temporal.namespace}/workflows\n` +
              `protected machines: ${ui.address}/namespaces/${config.temporal.namespace}/workflows?query=${encodeURIComponent('OsrJobKind="protect"')} (add the Osr* columns and save it as a view: see the README)\n`,
          );
      }
    });
  stack
    .command('status')
    .description(
      'report each part: running, stopped, unhealthy or external; exit 3 when a part is not running',
    )
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const status = await stackStatus(loadConfig());
      if (opts.json) printJson(status);
      else printStackTable(status);
      if (status.some((s) => s.state === 'stopped' || s.state === 'unhealthy'))
        process.exitCode = EXIT.unavailable;
    });
  stack
    .command('down')
    .description(
      'stop the workers (they finish in-flight work), then Azurite and Temporal; leaves no process',
    )
    .action(async () => {
      const config = loadConfig();
      await stackDown(config, (m) => process.stderr.write(`${m}\n`));
      const left = (await stackStatus(config)).filter((s) => s.state === 'running');
      if (left.length)
        throw new CliError(`still running: ${left.map((s) => `${s.name} (pid ${s.pid})`).join(', ')}`);
    });
  stack
    .command('reset')
    .description(
      'stop everything and delete the embedded state (Temporal history, Azurite data, demo machines, logs); asks first',
    )
    .option('--yes', 'do not ask (needed without a terminal)')
    .action(async (opts: { yes?: boolean }) => {
      const config = loadConfig();
      const doomed = resettablePaths(config);
      if (doomed.length === 0) {
        process.stdout.write('nothing to reset: no embedded state under the state folder\n');
        return;
      }
      if (!opts.yes) {
        if (!process.stdin.isTTY)
          throw new CliError(
            'stack reset deletes data; run it in a terminal to confirm, or pass --yes',
            EXIT.usage,
          );
        const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
        const answer = await rl.question(
          `This stops the stack and deletes every machine's protection, points and history held by the embedded stack:\n  ${doomed.join('\n  ')}\nType "reset" to go on: `,
        );
        rl.close();
        if (answer.trim() !== 'reset') throw new CliError('nothing was deleted', EXIT.usage);
      }
      await stackReset(config, (m) => process.stderr.write(`${m}\n`));
      process.stdout.write('reset: the next `osr stack up` starts clean\n');
    });
}
