// Input the network-facing parsers refused, counted per parser and kind in this process: the
// segment reader, the NBD and QMP clients, the API's body parser. Workers report the counts in
// their heartbeats; /metrics exports them (osr_input_rejections_total) and alerts fold them per
// kind. A rejection is never a crash: each parser throws its typed error and counts it here.
export type RejectingParser = 'segment' | 'nbd' | 'qmp' | 'http-body';

export interface RejectionCount {
  parser: RejectingParser;
  kind: string;
  count: number;
  /** When the last one happened, and what it was (no data, only the parser's message). */
  lastAt: string;
  lastDetail: string;
}

const counts = new Map<string, RejectionCount>();

export function countRejection(parser: RejectingParser, kind: string, detail: string): void {
  const key = `${parser}\u0000${kind}`;
  const entry = counts.get(key) ?? { parser, kind, count: 0, lastAt: '', lastDetail: '' };
  entry.count++;
  entry.lastAt = new Date().toISOString();
  entry.lastDetail = detail.slice(0, 300);
  counts.set(key, entry);
}

/** This process's counts since it started, parser then kind order. */
export function rejectionCounts(): RejectionCount[] {
  return [...counts.values()]
    .map((c) => ({ ...c }))
    .sort((a, b) => a.parser.localeCompare(b.parser) || a.kind.localeCompare(b.kind));
}
