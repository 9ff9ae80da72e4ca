// The short seeded fuzz run of every network-facing parser (the long one: `npm run fuzz`):
// nothing crashes, hangs or throws anything but the parser's typed error, and every refusal of
// hostile input is counted for /metrics and the alerts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectionCounts } from '../../lib/observability/rejections';
import { fuzz } from '../fuzz/harness';
import { fuzzTargets } from '../fuzz/targets';

// Inputs per parser, within about 60 s for all four on a loaded 2-core machine.
const INPUTS: Record<string, number> = {
  'segment reader': 400,
  'NBD client': 400,
  'QMP client': 250,
  'HTTP body parser': 400,
};

for (const target of fuzzTargets) {
  test(`fuzzing the ${target.name} finds nothing`, async () => {
    const report = await fuzz(target, {
      seed: 20261205,
      inputs: INPUTS[target.name] ?? 200,
      budgetMs: 20_000,
    });
    assert.ok(report.inputs >= 100, `only ${report.inputs} inputs ran`);
    assert.deepEqual(report.findings, [], 'every input is accepted or refused with a typed error');
    assert.ok(
      report.rejected > report.inputs / 4,
      `the generator reaches the checks (${report.rejected} refused)`,
    );
  });
}

test('every refusal of the network-facing clients was counted', () => {
  const parsers = new Set(rejectionCounts().map((c) => c.parser));
  // The segment reader counts in the block pipeline (decodeSegment itself is pure), so the
  // fuzzed parsers that count themselves are these.
  for (const p of ['nbd', 'qmp', 'http-body'])
    assert.ok(parsers.has(p as never), `${p} refusals are counted`);
});
