// A one-line progress bar for terminals; silent when stdout is not a TTY (scripts, CI).
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function renderBar(done: number, total: number, width = 30): string {
  const ratio = total <= 0 ? 1 : Math.min(1, done / total);
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%`;
}

export class ProgressLine {
  private readonly enabled = Boolean(process.stdout.isTTY);
  update(text: string): void {
    if (this.enabled) process.stdout.write(`\r\x1b[2K${text}`);
  }
  done(text?: string): void {
    if (!this.enabled) return;
    process.stdout.write(`\r\x1b[2K${text ? `${text}\n` : ''}`);
  }
}
