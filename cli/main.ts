// The `osr` command line.
import { Command } from 'commander';
import { ConfigError } from '../lib/config/config';
import { cliActor, runAs } from '../operations/audit';
import { PolicyError } from '../shared/policy';
import { storageCredentialProblem } from '../lib/azure/blob-client';
import { registerDemoCommands } from './commands/demo';
import { registerExportCommand } from './commands/export';
import { registerFailbackCommands } from './commands/failback';
import { registerFailoverCommands } from './commands/failover';
import { registerGroupCommands } from './commands/group';
import { registerMachineCommands } from './commands/machines';
import { registerOperatorCommands } from './commands/operator';
import { registerPlanCommands } from './commands/plan';
import { registerPolicyCommands } from './commands/policy';
import { registerDoctorCommand } from './commands/doctor';
import { registerStackCommands } from './commands/stack';
import { registerServeCommand } from './commands/serve';
import { CliError, EXIT } from './common/output';

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
  registerFailbackCommands(program);
  registerGroupCommands(program);
  registerDemoCommands(program);
  registerServeCommand(program);
  registerOperatorCommands(program);
  return program;
}

export async function run(argv: string[]): Promise<void> {
  try {
    // Audit entries of the operations name the OS user running the CLI.
    await runAs(cliActor(), () => buildProgram().parseAsync(argv));
  } catch (err) {
    // Wrong storage credentials are a configuration problem: say which and how to fix it.
    const storage = storageCredentialProblem(err);
    if (storage) {
      process.stderr.write(`osr: ${storage}\n`);
      process.exitCode = EXIT.usage;
      return;
    }
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
