// Guards every workflow against non-determinism: the histories recorded by earlier versions
// (OSR_RECORD_HISTORIES=1 npm test writes them) must replay on the current code.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { historiesDir, workflowCode } from '../helpers/replay';

const files = fs.existsSync(historiesDir)
  ? fs.readdirSync(historiesDir).filter((f) => f.endsWith('.json'))
  : [];

test('recorded workflow histories exist for the replay guard', () => {
  assert.ok(
    files.length > 0,
    `no histories in ${historiesDir}: record them with OSR_RECORD_HISTORIES=1 npm test`,
  );
});

test('every recorded history replays on the current workflow code', async () => {
  const histories = files.map((file) => ({
    workflowId: path.basename(file, '.json'),
    history: JSON.parse(fs.readFileSync(path.join(historiesDir, file), 'utf8')) as unknown,
  }));
  const failures: string[] = [];
  for await (const result of Worker.runReplayHistories(workflowCode(), histories)) {
    if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
  }
  assert.deepEqual(failures, []);
});
