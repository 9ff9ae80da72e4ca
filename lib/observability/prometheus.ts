// The Prometheus text exposition format (version 0.0.4), written by hand: a registry of metric
// families with HELP and TYPE, samples with escaped label values, and a merge of other exporters'
// text (the workers' Temporal SDK metrics) with extra labels, each family written once.
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'gauge' | 'counter' | 'histogram' | 'summary' | 'untyped';
export type Labels = Record<string, string | number | undefined>;

interface Family {
  name: string;
  type: MetricType;
  help: string;
  samples: string[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      if (!LABEL.test(k)) throw new Error(`invalid label name ${k}`);
      return `${k}="${escapeLabelValue(String(v))}"`;
    });
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class MetricsRegistry {
  readonly #families = new Map<string, Family>();

  #family(name: string, type: MetricType, help: string): Family {
    if (!NAME.test(name)) throw new Error(`invalid metric name ${name}`);
    let f = this.#families.get(name);
    if (!f) {
      f = { name, type, help, samples: [] };
      this.#families.set(name, f);
    } else if (f.type !== type) throw new Error(`metric ${name} declared as ${f.type} and ${type}`);
    return f;
  }

  /** Declares a family (so it has HELP and TYPE even with no sample) and returns a sample adder. */
  declare(name: string, type: MetricType, help: string): (labels: Labels, value: number | undefined) => void {
    const f = this.#family(name, type, help);
    return (labels, value) => {
      if (value === undefined) return;
      f.samples.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
    };
  }

  gauge(name: string, help: string) {
    return this.declare(name, 'gauge', help);
  }

  counter(name: string, help: string) {
    return this.declare(name, 'counter', help);
  }

  /**
   * Adds another exporter's exposition text, every sample with `extra` labels. Families already
   * known keep their HELP/TYPE; samples are grouped under their family.
   */
  merge(text: string, extra: Labels): void {
    let current: Family | undefined;
    const help = new Map<string, string>();
    const extraText = formatLabels(extra).slice(1, -1);
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      if (line.startsWith('# HELP ')) {
        const [, name, ...rest] = line.split(' ').slice(1);
        if (name) help.set(name, rest.join(' '));
        continue;
      }
      if (line.startsWith('# TYPE ')) {
        const [name, type] = line.slice('# TYPE '.length).split(' ');
        if (!name || !NAME.test(name)) continue;
        const known = this.#families.get(name);
        current =
          known ??
          this.#family(
            name,
            (['gauge', 'counter', 'histogram', 'summary'].includes(type ?? '')
              ? type
              : 'untyped') as MetricType,
            help.get(name) ?? '',
          );
        continue;
      }
      if (line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$/.exec(line);
      if (!m) continue;
      const [, name, labels, value] = m as unknown as [string, string, string | undefined, string];
      // A sample belongs to the family declared before it (histograms: _bucket, _sum, _count).
      const family =
        current && name.startsWith(current.name)
          ? current
          : (this.#families.get(name) ?? this.#family(name, 'untyped', ''));
      const inner = labels ? labels.slice(1, -1).replace(/,\s*$/, '') : '';
      const all = [inner, extraText].filter((s) => s !== '').join(',');
      family.samples.push(`${name}${all ? `{${all}}` : ''} ${value}`);
    }
  }

  toString(): string {
    const out: string[] = [];
    for (const f of this.#families.values()) {
      if (f.help) out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
      out.push(`# TYPE ${f.name} ${f.type}`);
      out.push(...f.samples);
    }
    return `${out.join('\n')}\n`;
  }
}
