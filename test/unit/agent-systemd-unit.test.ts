// The agent's systemd unit, read by systemd's own parser (systemd-analyze verify, systemd 252 as
// Debian 12 ships it): every key known, its launcher found and executable. The test guest boots
// without systemd, so enabling and starting the unit under a running systemd is not proven here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { systemdUnit } from '../../agent/service';

function verify(unitText: string, launcher: string): { status: number | null; said: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-unit-'));
  try {
    fs.writeFileSync(launcher, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const unit = path.join(dir, 'osr-agent.service');
    fs.writeFileSync(unit, unitText);
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    if (r.error)
      throw new Error(
        `systemd-analyze did not run (${r.error.message}): run \`npm run setup\` with OSR_SETUP_TESTS=1`,
      );
    return { status: r.status, said: `${r.stdout}${r.stderr}`.trim() };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(launcher, { force: true });
  }
}

test("systemd reads the agent's unit without a word: every key known, its launcher executable", () => {
  const launcher = path.join(os.tmpdir(), `osr-agent-launcher-${process.pid}`);
  const r = verify(systemdUnit(launcher), launcher);
  assert.deepEqual(r, { status: 0, said: '' });
});

test('the check is real: a misspelt key and a missing launcher are both reported', () => {
  const launcher = path.join(os.tmpdir(), `osr-agent-launcher-${process.pid}`);
  const misspelt = verify(systemdUnit(launcher).replace('RestartSec=', 'RestartSecs='), launcher);
  assert.match(misspelt.said, /Unknown key 'RestartSecs'/);
  const missing = verify(systemdUnit('/nonexistent/osr-agent'), launcher);
  assert.notEqual(missing.status, 0);
  assert.match(missing.said, /\/nonexistent\/osr-agent/);
});
