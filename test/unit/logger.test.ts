// Worker logs keep an error's message and type: the SDK logs activity failures under `error`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

test('an Error logged under error or err keeps its message, type and stack', () => {
  const logger = path.resolve(__dirname, '..', '..', 'lib', 'config', 'logger.js');
  const script = `
    const { createLogger } = require(${JSON.stringify(logger)});
    const log = createLogger('t');
    log.warn({ error: new TypeError('the socket is gone') }, 'activity failed');
    log.warn({ err: new Error('second') }, 'again');`;
  const res = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  const lines = res.stderr
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const first = lines[0]?.error as { message?: string; type?: string; stack?: string };
  assert.equal(first.message, 'the socket is gone');
  assert.equal(first.type, 'TypeError');
  assert.match(first.stack ?? '', /TypeError: the socket is gone/);
  assert.equal((lines[1]?.err as { message?: string }).message, 'second');
});
