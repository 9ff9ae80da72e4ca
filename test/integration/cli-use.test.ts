// The CLI as a person uses it: export counts what it wrote and never overwrites by accident,
// errors are JSON under --json, a closed pipe ends quietly, unknown commands fail with exit 2,
// policies refuse what cannot work (in OSR's words) and can be updated and deleted, and point tags
// cannot carry control characters to an operator's terminal.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import type { TestStack } from '../helpers/test-stack';
import { assertRefused, cliFor, cliMain } from '../helpers/cli';
import { useMachineTestbed } from '../helpers/testbed';

const MiB = 1024 * 1024;
let stack: TestStack;
let ctx: ControlContext;
let scratch: string;

const osr = cliFor(() => stack.env);

// 24 MiB of data in 4 MiB chunks: an export downloads several chunks at once, so a count that
// loses concurrent additions shows.
useMachineTestbed(
  { name: 'cu1', diskMiB: 32, dataMiB: 24, seed: 11, scratchPrefix: 'osr-cli-' },
  (bed) => ({ stack, ctx, scratch } = bed),
);

test('export: the bytes written are counted right; the path is checked first; no overwrite without --force', async () => {
  const out = path.join(scratch, 'cu1.raw');
  const first = await osr(['export', 'cu1', '--point', 'latest', '--out', out, '--json']);
  assert.equal(first.code, 0, first.stderr);
  const reported = (JSON.parse(first.stdout) as { bytes: number }).bytes;
  // Counted independently: the non-zero 64 KiB blocks of the file export wrote.
  const image = fs.readFileSync(out);
  let nonZero = 0;
  const zeros = Buffer.alloc(64 * 1024);
  for (let at = 0; at < image.length; at += zeros.length) {
    if (
      !image
        .subarray(at, at + zeros.length)
        .equals(zeros.subarray(0, Math.min(zeros.length, image.length - at)))
    )
      nonZero += Math.min(zeros.length, image.length - at);
  }
  assert.equal(nonZero, 24 * MiB, 'the data of the disk');
  assert.equal(reported, nonZero, 'export reports the bytes it wrote');

  const before = fs.statSync(out).mtimeMs;
  assertRefused(await osr(['export', 'cu1', '--point', 'latest', '--out', out]), 2, /exists; pass --force/);
  assert.equal(fs.statSync(out).mtimeMs, before, 'the file was not touched');
  const forced = await osr(['export', 'cu1', '--point', 'latest', '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.stderr);

  assertRefused(
    await osr(['export', 'cu1', '--point', 'latest', '--out', path.join(scratch, 'no-such-folder', 'x.raw')]),
    2,
    /the folder .*no-such-folder does not exist/,
  );
  assertRefused(
    await osr(['export', 'cu1', '--point', 'latest', '--out', scratch]),
    2,
    /is not a regular file/,
  );
  assertRefused(
    await osr(['export', 'no-such-machine', '--point', 'latest', '--out', path.join(scratch, 'n.raw')]),
    4,
    /no protected machine named no-such-machine/,
  );
  assert.ok(!fs.existsSync(path.join(scratch, 'n.raw')), 'nothing written for an unknown machine');
});

test('--json errors are one JSON object; usage errors exit 2, --help on an unknown command too', async () => {
  const res = await osr(['points', 'no-such-machine', '--json']);
  assert.equal(res.code, 4);
  const parsed = JSON.parse(res.stderr) as { error: { message: string; code: string; exitCode: number } };
  assert.equal(parsed.error.exitCode, 4);
  assert.equal(parsed.error.code, 'notFound');
  assert.match(parsed.error.message, /no-such-machine/);

  const unknown = await osr(['frobnicate']);
  assertRefused(unknown, 2, /unknown command 'frobnicate'/);
  const unknownJson = await osr(['status', '--no-such-flag', '--json']);
  assert.equal(unknownJson.code, 2);
  assert.match(
    (JSON.parse(unknownJson.stderr) as { error: { message: string } }).error.message,
    /unknown option/,
  );
  // A typo is not answered with the main help and success (bad-input-commands.test.ts has more).
  const help = await osr(['frobnicate', '--help']);
  assertRefused(help, 2, /unknown command 'frobnicate' for osr\. Commands: /);
  assert.equal(help.stdout, '');
});

test('osr status | head: a closed pipe ends quietly', async () => {
  // The reader is gone before the CLI writes its table, as `head` is once it has its lines.
  const child = spawn(process.execPath, [cliMain, 'policy', 'list'], { env: stack.env });
  child.stdout.destroy();
  const stderr: Buffer[] = [];
  child.stderr.on('data', (c: Buffer) => stderr.push(c));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(Buffer.concat(stderr).toString(), '', 'no EPIPE trace');
  assert.equal(code, 0);
});

test('policies: contradictions refused or warned with the reason; fractions refused; update and delete', async () => {
  assertRefused(
    await osr(['policy', 'create', 'p-frac', '--crash-every', '1.5s']),
    2,
    /--crash-every: "1.5s" is not a whole number of seconds/,
  );
  assertRefused(
    await osr(['policy', 'create', 'p-ret', '--rpo', '2h', '--retention', '1h', '--crash-every', '1m']),
    2,
    /the RPO threshold is longer than retention/,
  );
  assertRefused(
    await osr(['policy', 'create', 'p-max', '--retention', '400d']),
    2,
    /retention is at most a year/,
  );
  const warned = await osr([
    'policy',
    'create',
    'p-warn',
    '--rpo',
    '1m',
    '--crash-every',
    '5m',
    '--app-every',
    '0',
  ]);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(warned.stderr, /warning: points every 300 s with an RPO threshold of 60 s/);

  await osr(['policy', 'create', 'p-used', '--rpo', '2h', '--crash-every', '1h', '--app-every', '0']);
  assert.equal((await osr(['set-policy', 'cu1', 'p-used'])).code, 0);
  assertRefused(await osr(['policy', 'delete', 'p-used']), 5, /policy p-used is used by cu1/);
  const updated = await osr(['policy', 'update', 'p-used', '--rpo', '3h', '--json']);
  assert.equal(updated.code, 0, updated.stderr);
  assert.deepEqual((JSON.parse(updated.stdout) as { machines: string[] }).machines, ['cu1']);
  const status = await machines.machineStatus(ctx, 'cu1');
  assert.equal(status.policy.rpoThresholdSeconds, 3 * 3600, 'the machine took the change');
  assertRefused(await osr(['policy', 'update', 'p-used']), 2, /nothing to change/);
  assertRefused(await osr(['policy', 'delete', 'no-such-policy']), 4, /no policy named no-such-policy/);
  assert.equal((await osr(['set-policy', 'cu1', 'manual'])).code, 0);
  const deleted = await osr(['policy', 'delete', 'p-used']);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.doesNotMatch((await osr(['policy', 'list'])).stdout, /p-used/);
});

test('point tags: bounded, no control characters', async () => {
  const pointsBefore = (await ctx.vault.points('cu1')).length;
  assertRefused(
    await osr(['point', 'cu1', '--tag', 'evil\u001b[2J']),
    2,
    /cannot contain control characters/,
  );
  assertRefused(await osr(['point', 'cu1', '--tag', 'x'.repeat(129)]), 2, /1 to 128 characters/);
  assert.equal((await ctx.vault.points('cu1')).length, pointsBefore, 'no point was cut');
  const ok = await osr(['point', 'cu1', '--tag', 'before upgrade 2.4']);
  assert.equal(ok.code, 0, ok.stderr);
});
