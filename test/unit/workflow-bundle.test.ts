// The control worker loads the built workflow bundle only while it matches the compiled workflow
// code; any change to that code (or no bundle at all) makes it bundle at start instead.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { workflowCodeKey, workflowCodeOptions } from '../../workers/workflow-bundle';

const dist = path.resolve(__dirname, '..', '..');

function copyOfBuiltCode(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-bundle-'));
  for (const dir of ['workflows', 'shared'])
    fs.cpSync(path.join(dist, dir), path.join(root, dir), { recursive: true });
  return root;
}

function markBuilt(root: string): void {
  fs.mkdirSync(path.join(root, 'workflow-bundle'));
  fs.writeFileSync(path.join(root, 'workflow-bundle', 'bundle.js'), '// stands in for the bundle');
  fs.writeFileSync(path.join(root, 'workflow-bundle', 'key'), workflowCodeKey(root));
}

test('a bundle built from the code on disk is loaded; without one the worker bundles the sources', () => {
  const root = copyOfBuiltCode();
  try {
    assert.deepEqual(workflowCodeOptions(root), {
      options: { workflowsPath: path.join(root, 'workflows') },
      prebuilt: false,
    });
    markBuilt(root);
    assert.deepEqual(workflowCodeOptions(root), {
      options: { workflowBundle: { codePath: path.join(root, 'workflow-bundle', 'bundle.js') } },
      prebuilt: true,
    });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a changed, added or removed file of workflow code makes the bundle out of date', () => {
  const changes: Record<string, (root: string) => void> = {
    'a shared file changed': (root) => fs.appendFileSync(path.join(root, 'shared', 'task-queues.js'), '\n'),
    'a workflow file added': (root) => fs.writeFileSync(path.join(root, 'workflows', 'extra.js'), ''),
    'a workflow file removed': (root) => fs.rmSync(path.join(root, 'workflows', 'index.js')),
  };
  for (const [what, change] of Object.entries(changes)) {
    const root = copyOfBuiltCode();
    try {
      markBuilt(root);
      change(root);
      assert.equal(workflowCodeOptions(root).prebuilt, false, what);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
});
