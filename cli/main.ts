// The `osr` command line.
import { Command } from 'commander';
import { ConfigError } from '../shared/config';
import { PolicyError } from '../shared/policy';
import { registerDemoCommands } from './commands/demo';
import { registerExportCommand } from './commands/export';
import { registerFailoverCommands } from './commands/failover';
import { registerGroupCommands } from './commands/group';
import { registerMachineCommands } from './commands/machines';
import { registerPlanCommands } from './commands/plan';
import { registerPolicyCommands } from './commands/policy';
import { registerDoctorCommand } from './commands/doctor';
import { registerStackCommands } from './commands/stack';
import { registerServeCommand } from './commands/serve';
import { CliError, EXIT } from './output';

export function buildProgram(): Command {
  const program = new Command('osr')
    .description('Open Site Recovery: replicate VM disks into Azure Blob Storage, fail over and fail back')
    .showHelpAfterError('(run with --help for usage)');
  registerStackCommands(program);
  registerDoctorCommand(program);
  registerPolicyCommands(program);
  registerMachineCommands(program);
  registerExportCommand(program);
  registerFailoverCommands(program);
  registerPlanCommands(program);
  registerGroupCommands(program);
  registerDemoCommands(program);
  registerServeCommand(program);
  return program;
}

export async function run(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const code =
      err instanceof CliError
        ? err.exitCode
        : err instanceof ConfigError || err instanceof PolicyError
          ? EXIT.usage
          : EXIT.failure;
    process.stderr.write(`osr: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = code;
  }
}

if (require.main === module) void run(process.argv);
