// The benchmark's output: the machine it ran on, the results table (printed, and written into
// BENCHMARKS.md between markers so the hand-written analysis around them survives a new run).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const START = '<!-- bench:results:start (written by `npm run bench`; edit outside the markers) -->';
const END = '<!-- bench:results:end -->';

/** A generated part of BENCHMARKS.md: the text between its two markers is rewritten by a run. */
export interface ReportSection {
  start: string;
  end: string;
}

export const REPLICATION_SECTION: ReportSection = { start: START, end: END };
export const RECOVERY_SECTION: ReportSection = {
  start:
    '<!-- bench:recovery:start (written by `npm run bench` or bench/recovery-time.js; edit outside the markers) -->',
  end: '<!-- bench:recovery:end -->',
};

export interface MachineFacts {
  date: string;
  cpu: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  node: string;
  qemu: string;
  azurite: string;
  rclone: string;
  temporal: string;
  /** 1-minute load average when the run began: other work on the machine shows here. */
  loadAtStart: number;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args);
    return stdout.split('\n')[0]?.trim() ?? '?';
  } catch (err) {
    return `unavailable (${(err as Error).message.split('\n')[0] ?? ''})`;
  }
}

export async function machineFacts(temporalBinary: string): Promise<MachineFacts> {
  const azuritePkg = JSON.parse(fs.readFileSync(require.resolve('azurite/package.json'), 'utf8')) as {
    version: string;
  };
  return {
    date: new Date().toISOString(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    ramGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    qemu: await firstLine('qemu-storage-daemon', ['--version']),
    azurite: azuritePkg.version,
    rclone: await firstLine('rclone', ['version']),
    temporal: await firstLine(temporalBinary, ['--version']),
    loadAtStart: os.loadavg()[0] ?? 0,
  };
}

export interface Row {
  measure: string;
  osr: string;
  reference: string;
  /** OSR against the reference, oriented as the target reads. */
  ratio?: number;
  target?: string;
  met?: boolean;
}

const verdict = (r: Row): string => (r.met === undefined ? 'info' : r.met ? 'met' : 'MISSED');
const ratioText = (r: Row): string => (r.ratio === undefined ? '—' : `${r.ratio.toFixed(2)}×`);

export function textTable(rows: readonly Row[]): string {
  const cells = rows.map((r) => [r.measure, r.osr, r.reference, ratioText(r), r.target ?? '—', verdict(r)]);
  const head = ['measure', 'OSR', 'reference', 'ratio', 'target', 'result'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: readonly string[]) => c.map((x, i) => x.padEnd(widths[i] ?? 0)).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

export function markdownTable(rows: readonly Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    '| measure | OSR | reference | ratio | target | result |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${[r.measure, r.osr, r.reference, ratioText(r), r.target ?? '—', verdict(r)].map(esc).join(' | ')} |`,
    ),
  ].join('\n');
}

export function factsMarkdown(f: MachineFacts, runSeconds: number, settings: string): string {
  return [
    `Run of ${f.date} (${Math.round(runSeconds)} s in all).`,
    '',
    `- CPU: ${f.cores} × ${f.cpu}; RAM ${f.ramGiB} GiB; ${f.kernel}; load average ${f.loadAtStart.toFixed(2)} when the run began`,
    `- Node ${f.node}; ${f.qemu}; Azurite ${f.azurite} (blob service, data in a folder on disk); ${f.temporal}; ${f.rclone}`,
    `- OSR: ${settings}`,
  ].join('\n');
}

const TEMPLATE = `# Benchmarks

Replication benchmark of OSR: \`npm run bench\` (bench/run.ts). Everything runs on one machine:
qemu-storage-daemon (the source), Azurite (the storage account), the Temporal dev server, the
three OSR workers and the baselines share its cores.

${START}
${END}
`;

/**
 * Replaces one generated part of BENCHMARKS.md (creating the file, or appending the section's
 * markers, if needed), formatted as the
 * project's `prettier --check .` expects, so a run never breaks the lint.
 */
export async function writeBenchmarksFile(
  file: string,
  generated: string,
  section: ReportSection = REPLICATION_SECTION,
): Promise<string> {
  const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : TEMPLATE;
  const at = current.indexOf(section.start);
  const end = current.indexOf(section.end);
  const base = at >= 0 && end > at ? current : `${current.trimEnd()}\n\n${section.start}\n${section.end}\n`;
  const a = base.indexOf(section.start) + section.start.length;
  const b = base.indexOf(section.end);
  let text = `${base.slice(0, a)}\n\n${generated.trim()}\n\n${base.slice(b)}`;
  try {
    const prettier = await import('prettier');
    const options = (await prettier.resolveConfig(file)) ?? {};
    text = await prettier.format(text, { ...options, filepath: file });
  } catch (err) {
    console.error(`BENCHMARKS.md left unformatted: ${(err as Error).message}`);
  }
  fs.writeFileSync(file, text);
  return file;
}

export const mib = (bytes: number): string => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
export const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
export const rate = (bytes: number, seconds: number): string =>
  `${(bytes / 1024 ** 2 / seconds).toFixed(0)} MiB/s`;
