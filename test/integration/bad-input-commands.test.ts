// An unknown command, as an operator or a script meets it at the CLI: exit 2, a message naming the
// word and listing the commands of that level, nothing on stdout, with or without --help (commander
// alone answered `osr <typo> --help` with the main help and exit 0). Nothing runs: the check comes
// before any command, so no stack is needed here. The other bad input: bad-input.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertRefused, runCli } from '../helpers/cli';

const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };

test('osr <unknown command> [--help]: exit 2, the word and the commands named, no help printed', async () => {
  const cases: Array<{ args: string[]; word: string; level: RegExp }> = [
    { args: ['bogus'], word: 'bogus', level: /for osr\. Commands: stack, .*protect, .*failover, .*plan, / },
    { args: ['bogus', '--help'], word: 'bogus', level: /for osr\. Commands: stack, / },
    { args: ['--help', 'bogus'], word: 'bogus', level: /for osr\. Commands: stack, / },
    { args: ['help', 'bogus'], word: 'bogus', level: /for osr\. Commands: stack, / },
    { args: ['plan', 'bogus', '--help'], word: 'bogus', level: /for osr plan\. Commands: create, list, / },
    { args: ['plan', 'help', 'nope'], word: 'nope', level: /for osr plan\. Commands: create, / },
    { args: ['failover', 'tset', 'web-1'], word: 'tset', level: /for osr failover\. Commands: / },
  ];
  for (const { args, word, level } of cases) {
    const res = await runCli(args, env);
    const what = `osr ${args.join(' ')}`;
    assertRefused(res, 2, new RegExp(`^osr: unknown command '${word}' `));
    assert.match(res.stderr, level, what);
    assert.equal(res.stdout, '', `${what}: no help on stdout`);
  }
  const json = await runCli(['bogus', '--help', '--json'], env);
  assert.equal(json.code, 2);
  const body = JSON.parse(json.stderr) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'usage');
  assert.match(body.error.message, /unknown command 'bogus'/);
});

test('known commands keep their help: exit 0 and the help of that command', async () => {
  for (const args of [['--help'], ['plan', '--help'], ['help', 'plan'], ['plan', 'create', '--help']]) {
    const res = await runCli(args, env);
    assert.equal(res.code, 0, `osr ${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stdout, /^Usage: osr/, `osr ${args.join(' ')}`);
  }
});
