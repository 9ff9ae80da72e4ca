// A node:test reporter that prints how long each test file took, slowest first, at the end of
// the run. Files run one at a time, so a file's time runs from the previous file's last event to
// its own last one: its process start and its stack's start-up count, which no test's
// duration_ms includes.
import { relative } from 'node:path';
import { cwd } from 'node:process';

export default async function* fileTimes(source) {
  const started = Date.now();
  const spans = new Map(); // file → { from, to }
  let previousEnd = started;
  let current;
  for await (const event of source) {
    const file = event.data?.file;
    // Every file is enqueued (and may be dequeued) when the run starts: only its own work counts.
    if (!file || event.type === 'test:enqueue' || event.type === 'test:dequeue') continue;
    if (file !== current) {
      if (current !== undefined) previousEnd = spans.get(current).to;
      current = file;
    }
    const span = spans.get(file) ?? { from: previousEnd, to: previousEnd };
    span.to = Date.now();
    spans.set(file, span);
  }
  const rows = [...spans]
    .map(([file, { from, to }]) => ({ file, ms: to - from }))
    .sort((a, b) => b.ms - a.ms);
  yield `# time per test file, slowest first (whole run ${Math.round((Date.now() - started) / 1000)} s)\n`;
  for (const { file, ms } of rows) {
    yield `# ${(ms / 1000).toFixed(1).padStart(7)} s  ${relative(cwd(), file)}\n`;
  }
}
