// Unknown commands, found before commander parses: commander answers `osr <typo> --help` with the
// main help and exit 0, so a script that mistyped a command would believe it worked.
import type { Command } from 'commander';
import { CliError, EXIT } from './output';

/**
 * Throws a usage error (exit 2) naming the first word of args that is not a command where one is
 * expected, with the commands that are; `help <word>` is checked the same way. args: argv after
 * the node executable and script.
 */
export function assertKnownCommand(program: Command, args: string[]): void {
  let command = program;
  const words = args.filter((a) => !a.startsWith('-'));
  for (let i = 0; i < words.length && command.commands.length > 0; i++) {
    const word = words[i] as string;
    // `help <command...>` names commands of this level too.
    if (word === 'help') continue;
    const next = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) {
      const where = command === program ? 'osr' : commandPath(command);
      const known = command.commands.map((c) => c.name());
      throw new CliError(
        `unknown command '${word}' for ${where}. Commands: ${known.join(', ')} (run \`${where} --help\` for usage)`,
        EXIT.usage,
      );
    }
    command = next;
  }
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}
