// The layout's promises (docs/architecture.md), checked on the source tree: no folder imports a
// folder that imports it (directly or round a longer loop), and no source file grows past 400
// lines. What each layer may import (shared/, lib/, workflows/) is checked by the lint rules.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(__dirname, '..', '..', '..');
const MAX_LINES = 400;

function sourceFiles(): string[] {
  return execFileSync('git', ['ls-files', '*.ts', '*.js', '*.mjs'], { cwd: root, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && fs.existsSync(path.join(root, f)));
}

/** Folder → the folders its files import (relative imports only; tests and benchmarks excluded). */
function folderImports(): Map<string, Set<string>> {
  const edges = new Map<string, Set<string>>();
  for (const file of sourceFiles()) {
    if (!file.endsWith('.ts') || file.startsWith('test/') || file.startsWith('bench/')) continue;
    const dir = path.dirname(file);
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    for (const [, spec] of text.matchAll(/from\s+'(\.[^']*)'/g)) {
      const target = path.normalize(path.join(dir, spec as string));
      const targetDir =
        fs.existsSync(path.join(root, target)) && fs.statSync(path.join(root, target)).isDirectory()
          ? target
          : path.dirname(target);
      if (targetDir === dir) continue;
      if (!edges.has(dir)) edges.set(dir, new Set());
      edges.get(dir)?.add(targetDir);
    }
  }
  return edges;
}

/** Strongly connected folders (Tarjan): every group of more than one is an import loop. */
function loops(edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      for (let w = stack.pop(); w !== undefined; w = w === v ? undefined : stack.pop()) {
        onStack.delete(w);
        group.push(w);
      }
      if (group.length > 1) found.push(group.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return found;
}

test('no folder imports a folder that imports it', () => {
  assert.deepEqual(loops(folderImports()), []);
});

test(`no source file is over ${MAX_LINES} lines`, () => {
  const long = sourceFiles()
    .map((f) => ({ f, lines: fs.readFileSync(path.join(root, f), 'utf8').split('\n').length - 1 }))
    .filter((x) => x.lines > MAX_LINES)
    .map((x) => `${x.f} (${x.lines})`);
  assert.deepEqual(long, []);
});

test('the check sees a loop when there is one', () => {
  const edges = new Map([
    ['a', new Set(['b'])],
    ['b', new Set(['c'])],
    ['c', new Set(['a'])],
  ]);
  assert.deepEqual(loops(edges), [['a', 'b', 'c']]);
});
