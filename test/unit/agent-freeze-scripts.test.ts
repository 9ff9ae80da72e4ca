// The agent's freeze scripts (agent/tracking/freeze-scripts.ts) run as real programs on this
// host: order, the point in between, thaw and post after a failing or hanging script, and the
// script named in the failure.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { freezeScriptsIn, withFreezeScripts } from '../../agent/tracking/freeze-scripts';
import { TrackingError } from '../../agent/tracking/errors';

/** A freeze.d folder whose scripts append "<name> <phase> <point>" to a log; returns both paths. */
function scripts(bodies: Record<string, string>): { dir: string; log: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-freeze-d-'));
  const log = path.join(dir, '..', `${path.basename(dir)}.log`);
  for (const [name, extra] of Object.entries(bodies))
    fs.writeFileSync(
      path.join(dir, name),
      `#!/bin/sh\necho "${name} $1 $OSR_POINT_IN_TIME" >> ${log}\n${extra}\n`,
      { mode: 0o755 },
    );
  return { dir, log };
}
const lines = (log: string): string[] => fs.readFileSync(log, 'utf8').trim().split('\n');

test('scripts freeze in name order, the point is cut, then post and thaw in reverse', async () => {
  const { dir, log } = scripts({ '20-db': '', '10-app': '' });
  fs.writeFileSync(path.join(dir, 'README'), 'not executable');
  fs.writeFileSync(path.join(dir, '30-old~'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  assert.deepEqual(
    freezeScriptsIn(dir).map((f) => path.basename(f)),
    ['10-app', '20-db'],
  );
  const got = await withFreezeScripts(
    { dir, pitId: 'p1', pre: `echo pre >> ${log}`, post: `echo post >> ${log}`, warn: assert.fail },
    async () => {
      fs.appendFileSync(log, 'cut\n');
      return 'point';
    },
  );
  assert.equal(got, 'point');
  assert.deepEqual(lines(log), [
    '10-app freeze p1',
    '20-db freeze p1',
    'pre',
    'cut',
    'post',
    '20-db thaw p1',
    '10-app thaw p1',
  ]);
});

test('a failing script: no point, a QuiesceError naming it, and what ran is thawed with post', async () => {
  const { dir, log } = scripts({
    '10-app': '',
    '20-fails': '[ "$1" = freeze ] && { echo "database busy" >&2; exit 3; }; true',
    '30-never': '',
  });
  let cut = false;
  await assert.rejects(
    withFreezeScripts({ dir, pitId: 'p2', post: `echo post >> ${log}`, warn: () => undefined }, async () => {
      cut = true;
    }),
    (err: Error) =>
      err instanceof TrackingError &&
      err.name === 'QuiesceError' &&
      err.message.includes(path.join(dir, '20-fails')) &&
      /exit 3: database busy/.test(err.message),
  );
  assert.equal(cut, false);
  assert.deepEqual(lines(log), [
    '10-app freeze p2',
    '20-fails freeze p2',
    'post',
    '20-fails thaw p2',
    '10-app thaw p2',
  ]);
});

test('a hanging pre command is killed at its time-out, and post still runs', async () => {
  const { dir, log } = scripts({});
  const started = Date.now();
  await assert.rejects(
    withFreezeScripts(
      {
        dir,
        pitId: 'p3',
        pre: 'sleep 30',
        post: `echo post >> ${log}`,
        timeoutSeconds: 1,
        warn: () => undefined,
      },
      async () => assert.fail('no point is cut while the application is not quiesced'),
    ),
    /pre command "sleep 30" failed: did not finish within 1 s/,
  );
  assert.ok(Date.now() - started < 10_000);
  assert.deepEqual(lines(log), ['post']);
});

test('a failing thaw is a warning, and the point stands', async () => {
  const { dir } = scripts({ '10-app': '[ "$1" = thaw ] && exit 5; true' });
  const warnings: string[] = [];
  const got = await withFreezeScripts(
    { dir, pitId: 'p4', warn: (w) => warnings.push(w) },
    async () => 'point',
  );
  assert.equal(got, 'point');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /10-app thaw: exit 5/);
});
