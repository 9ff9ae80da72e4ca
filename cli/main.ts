// The `osr` command line.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../lib/config/config';
import { cliActor, runAs } from '../operations/audit';
import { OperationError } from '../operations/context';
import { PolicyError } from '../shared/policy';
import { storageCredentialProblem } from '../lib/azure/blob-client';
import { registerDemoCommands } from './commands/demo';
import { registerExportCommand } from './commands/export';
import { registerFailbackCommands } from './commands/failback';
import { registerFailoverCommands } from './commands/failover';
import { registerGroupCommands } from './commands/group';
import { registerHostCommands } from './commands/hosts';
import { registerKeysCommands } from './commands/keys';
import { registerMachineCommands } from './commands/machines';
import { registerOperatorCommands } from './commands/operator';
import { registerPlanCommands } from './commands/plan';
import { registerPolicyCommands } from './commands/policy';
import { registerSiteCommands } from './commands/sites';
import { registerDoctorCommand } from './commands/doctor';
import { registerStackCommands } from './commands/stack';
import { registerServeCommand } from './commands/serve';
import { assertKnownCommand } from './common/command-check';
import { registerTokenCommands } from './commands/tokens';
import { registerAgentCommands } from './commands/agents';
import { registerApprovalCommands } from './commands/approvals';
import { ApprovalPendingError } from '../operations/approvals';
import { exitCodes } from './common/context';
import { CliError, EXIT } from './common/output';

export function buildProgram(): Command {
  const program = new Command('osr')
    .description('Open Site Recovery: replicate VM disks into Azure Blob Storage, fail over and fail back')
    // Usage errors are thrown, not exited on, so they get exit code 2 and --json's shape (run()).
    .exitOverride()
    .configureOutput({ outputError: () => undefined });
  registerStackCommands(program);
  registerDoctorCommand(program);
  registerPolicyCommands(program);
  registerSiteCommands(program);
  registerMachineCommands(program);
  registerExportCommand(program);
  registerFailoverCommands(program);
  registerPlanCommands(program);
  registerFailbackCommands(program);
  registerGroupCommands(program);
  registerHostCommands(program);
  registerDemoCommands(program);
  registerServeCommand(program);
  registerTokenCommands(program);
  registerAgentCommands(program);
  registerApprovalCommands(program);
  registerOperatorCommands(program);
  registerKeysCommands(program);
  return program;
}

export async function run(argv: string[]): Promise<void> {
  // `osr status | head`: the reader closed the pipe; what it did not read nobody wanted. End
  // quietly instead of with an EPIPE stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  const json = argv.includes('--json');
  try {
    // Audit entries of the operations name the OS user running the CLI.
    const program = buildProgram();
    assertKnownCommand(program, argv.slice(2));
    await runAs(cliActor(), () => program.parseAsync(argv));
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, successfully.
      if (err.exitCode === 0) return;
      return fail(json, `${err.message.replace(/^error: /, '')} (run with --help for usage)`, EXIT.usage);
    }
    // Accepted, not done: a failover or commit waiting for another identity's approval.
    if (err instanceof ApprovalPendingError) {
      if (json) process.stdout.write(`${JSON.stringify({ approval: err.approval }, null, 2)}\n`);
      else process.stdout.write(`${err.message}\n`);
      process.exitCode = EXIT.pending;
      return;
    }
    // Wrong storage credentials are a configuration problem: say which and how to fix it.
    const storage = storageCredentialProblem(err);
    if (storage) return fail(json, storage, EXIT.usage);
    const code =
      err instanceof CliError
        ? err.exitCode
        : err instanceof OperationError
          ? exitCodes[err.code]
          : err instanceof ConfigError || err instanceof PolicyError
            ? EXIT.usage
            : EXIT.failure;
    fail(json, err instanceof Error ? err.message : String(err), code);
  }
}

/** Reports a failure on stderr: a line for people, or with --json one JSON object for scripts. */
function fail(json: boolean, message: string, exitCode: number): void {
  const code = (Object.entries(EXIT).find(([, n]) => n === exitCode)?.[0] ?? 'failure') as keyof typeof EXIT;
  process.stderr.write(
    json ? `${JSON.stringify({ error: { message, code, exitCode } })}\n` : `osr: ${message}\n`,
  );
  process.exitCode = exitCode;
}

if (require.main === module) void run(process.argv);
