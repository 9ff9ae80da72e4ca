// The Prometheus text formatter: HELP/TYPE once per family, escaped label values, and other
// exporters' text merged under their families with extra labels.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MetricsRegistry, escapeLabelValue, formatValue } from '../../lib/observability/prometheus';

test('families are written once with HELP and TYPE, samples with escaped labels', () => {
  const r = new MetricsRegistry();
  const rpo = r.gauge('osr_machine_rpo_seconds', 'Seconds since the newest point\nof the machine');
  rpo({ machine: 'web-1' }, 12);
  rpo({ machine: 'we"b\\2' }, 3.5);
  rpo({ machine: 'skipped' }, undefined);
  r.counter('osr_machine_cycles_total', 'Cycles')({ machine: 'web-1', site: undefined }, 4);
  r.gauge('osr_empty', 'Declared, no sample');
  assert.equal(
    r.toString(),
    [
      '# HELP osr_machine_rpo_seconds Seconds since the newest point\\nof the machine',
      '# TYPE osr_machine_rpo_seconds gauge',
      'osr_machine_rpo_seconds{machine="web-1"} 12',
      'osr_machine_rpo_seconds{machine="we\\"b\\\\2"} 3.5',
      '# HELP osr_machine_cycles_total Cycles',
      '# TYPE osr_machine_cycles_total counter',
      'osr_machine_cycles_total{machine="web-1"} 4',
      '# HELP osr_empty Declared, no sample',
      '# TYPE osr_empty gauge',
      '',
    ].join('\n'),
  );
  assert.equal(escapeLabelValue('a\nb'), 'a\\nb');
  assert.deepEqual(
    [formatValue(NaN), formatValue(Infinity), formatValue(-Infinity)],
    ['NaN', '+Inf', '-Inf'],
  );
  assert.throws(() => r.counter('osr_machine_rpo_seconds', 'again, as another type'), /declared as gauge/);
  assert.throws(() => r.gauge('bad-name', 'x'), /invalid metric name/);
});

test('merged exporter text keeps one HELP/TYPE per family across sources, with the extra labels', () => {
  const sdk = (pollers: number) =>
    [
      '# HELP temporal_num_pollers Current number of pollers',
      '# TYPE temporal_num_pollers gauge',
      `temporal_num_pollers{poller_type="activity_task",task_queue="q"} ${pollers}`,
      '# HELP temporal_request_latency Request latency',
      '# TYPE temporal_request_latency histogram',
      'temporal_request_latency_bucket{operation="Poll",le="0.1"} 3',
      'temporal_request_latency_bucket{operation="Poll",le="+Inf"} 4',
      'temporal_request_latency_sum{operation="Poll"} 0.25',
      'temporal_request_latency_count{operation="Poll"} 4',
      'temporal_worker_start 1',
      '',
    ].join('\n');
  const r = new MetricsRegistry();
  r.merge(sdk(2), { osr_role: 'control', osr_server: 'control-h-1' });
  r.merge(sdk(5), { osr_role: 'process-server', osr_server: 'process-server-h-2' });
  const text = r.toString();
  assert.equal(text.match(/# TYPE temporal_num_pollers gauge/g)?.length, 1);
  assert.equal(text.match(/# TYPE temporal_request_latency histogram/g)?.length, 1);
  assert.match(
    text,
    /temporal_num_pollers\{poller_type="activity_task",task_queue="q",osr_role="control",osr_server="control-h-1"\} 2\ntemporal_num_pollers\{.*osr_role="process-server".*\} 5\n/,
  );
  assert.match(
    text,
    /temporal_request_latency_bucket\{operation="Poll",le="\+Inf",osr_role="control",osr_server="control-h-1"\} 4/,
  );
  assert.match(text, /temporal_worker_start\{osr_role="control",osr_server="control-h-1"\} 1/);
  // Every sample line sits after its family's TYPE line.
  let family = '';
  for (const line of text.trim().split('\n')) {
    const type = /^# TYPE (\S+)/.exec(line);
    if (type) family = type[1] as string;
    else if (!line.startsWith('#')) assert.ok(line.startsWith(family), `${line} under ${family}`);
  }
});
