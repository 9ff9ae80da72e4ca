// CPU seconds per process over a measured step, from /proc: on a 2-core machine shared by the
// source, the storage emulator, Temporal and the workers, who burns the CPU explains a rate.
// The machine's total is kept too, so load from processes outside the benchmark shows.
import fs from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface CpuSnapshot {
  /** Busy CPU seconds of the whole machine since boot. */
  machine: number;
  byName: Record<string, number>;
}

export interface CpuUse {
  wallSeconds: number;
  /** Busy CPU seconds of the whole machine over the step. */
  machine: number;
  byName: Record<string, number>;
  /** Busy CPU seconds of processes outside the benchmark. */
  other: number;
}

function machineBusy(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return (
    ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) /
    TICKS_PER_SECOND
  );
}

/** utime + stime, plus the reaped children's (rclone and qemu-img under the benchmark process). */
function processCpu(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    // fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14 to 17.
    return ((fields[11] ?? 0) + (fields[12] ?? 0) + (fields[13] ?? 0) + (fields[14] ?? 0)) / TICKS_PER_SECOND;
  } catch {
    return 0; // gone: counted up to its last snapshot only
  }
}

export class CpuMeter {
  readonly #pids = new Map<string, number>();

  track(name: string, pid: number): void {
    this.#pids.set(name, pid);
  }

  snapshot(): CpuSnapshot {
    const byName: Record<string, number> = {};
    for (const [name, pid] of this.#pids) byName[name] = processCpu(pid);
    return { machine: machineBusy(), byName };
  }

  /** Runs `fn` and returns its result with the CPU used meanwhile. */
  async measure<T>(fn: () => Promise<T>): Promise<{ result: T; cpu: CpuUse }> {
    const before = this.snapshot();
    const start = performance.now();
    const result = await fn();
    return { result, cpu: this.since(before, start) };
  }

  /** CPU used from `before` (taken at performance.now() `start`) until now. */
  since(before: CpuSnapshot, start: number): CpuUse {
    const wallSeconds = (performance.now() - start) / 1000;
    const after = this.snapshot();
    const byName: Record<string, number> = {};
    for (const name of Object.keys(after.byName))
      byName[name] = (after.byName[name] ?? 0) - (before.byName[name] ?? 0);
    const machine = after.machine - before.machine;
    const ours = Object.values(byName).reduce((a, b) => a + b, 0);
    return { wallSeconds, machine, byName, other: Math.max(0, machine - ours) };
  }
}

/** "azurite 12.1 s, process-server 9.8 s, … (machine 31.0 of 40.0 s available; others 2.1 s)". */
export function formatCpu(use: CpuUse, cores: number): string {
  const parts = Object.entries(use.byName)
    .filter(([, s]) => s >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([name, s]) => `${name} ${s.toFixed(1)}`);
  return `${parts.join(', ')}; machine busy ${use.machine.toFixed(1)} of ${(use.wallSeconds * cores).toFixed(1)} CPU s, outside the benchmark ${use.other.toFixed(1)}`;
}
