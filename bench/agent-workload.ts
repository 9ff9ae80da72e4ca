// The paced write workload of the agent benchmark, run inside the agent test guest by the agent's
// own node (/opt/osr-agent/node: the guest has no fio). 64 KiB writes opened O_DSYNC (each returns
// once the device has it), scheduled at a fixed rate; the latency of each write is timed with
// hrtime. Meanwhile it samples the agent's CPU time and RSS, and the guest's busy CPU, from /proc.
// Half of each block is pseudo-random, half text: a change that compresses about 2:1.

/** Block size of a write: OSR's block, dm-era's block. */
export const WRITE_BYTES = 64 * 1024;

export interface WorkloadResult {
  device: string;
  writes: number;
  seconds: number;
  /** Per-write latency, milliseconds. */
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Writes that started later than their slot by more than one interval (the pace was not kept). */
  late: number;
  /** The agent's CPU seconds over the run; RSS in bytes, sampled each second. */
  agentCpuSeconds: number;
  agentRssPeak: number;
  agentRssMean: number;
  /** The agent's RSS high-water mark over its whole life (VmHWM: the initial sync included). */
  agentRssHwm: number;
  /** Share of the per-second samples in which a point's snapshot (device osr-*-p*) existed. */
  snapshotHeld: number;
  /** Busy share of the guest's one vCPU over the run. */
  guestBusy: number;
}

/** The script; argv: device, seconds, bytes per second, content seed. Prints one JSON line. */
export const WORKLOAD_SCRIPT = String.raw`
const fs = require('fs');
const [device, seconds, rate, seed] = process.argv.slice(2);
const BLOCK = ${WRITE_BYTES};
const interval = (BLOCK / Number(rate)) * 1000;
const count = Math.floor((Number(seconds) * 1000) / interval);
const fd = fs.openSync(device, fs.constants.O_WRONLY | fs.constants.O_DSYNC);
const text = Buffer.alloc(BLOCK / 2, 'OSR agent benchmark: a line of ordinary, compressible text. ');
function block(n) {
  const b = Buffer.alloc(BLOCK);
  let x = ((n + Number(seed) * 1000003) * 2654435761) >>> 0 || 1;
  for (let i = 0; i < BLOCK / 2; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  text.copy(b, BLOCK / 2);
  return b;
}
function agentPid() {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const c = fs.readFileSync('/proc/' + d + '/cmdline', 'utf8').split('\0').join(' ');
      if (c.includes('agent/main.js run')) return d;
    } catch {}
  }
}
const pid = agentPid();
function agentCpu() {
  try {
    const s = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number);
    return (f[11] + f[12]) / 100;
  } catch { return 0; }
}
function agentRss() {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/' + pid + '/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch { return 0; }
}
function agentHwm() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/' + pid + '/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch { return 0; }
}
// Live devices from sysfs: /dev/mapper may keep nodes of removed devices where udev does not run.
function snapshotNow() {
  try {
    return fs.readdirSync('/sys/block').some((b) => {
      try { return /^osr-.+-p\d+$/.test(fs.readFileSync('/sys/block/' + b + '/dm/name', 'utf8').trim()); } catch { return false; }
    });
  } catch { return false; }
}
function busy() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] || 0), total };
}
const rss = [];
const held = [];
const sample = () => (rss.push(agentRss()), held.push(snapshotNow()));
sample();
const sampler = setInterval(sample, 1000);
const cpu0 = agentCpu();
const busy0 = busy();
const lat = [];
let late = 0;
const t0 = performance.now();
let n = 0;
function next() {
  while (n < count) {
    const due = t0 + n * interval;
    const now = performance.now();
    if (due > now) return void setTimeout(next, due - now);
    if (now - due > interval) late++;
    const b = block(n);
    const s = performance.now();
    fs.writeSync(fd, b, 0, BLOCK, n * BLOCK);
    lat.push(performance.now() - s);
    n++;
  }
  clearInterval(sampler);
  sample();
  fs.closeSync(fd);
  const secs = (performance.now() - t0) / 1000;
  const busy1 = busy();
  const sorted = lat.slice().sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  const live = rss.filter((r) => r > 0);
  console.log(JSON.stringify({
    device, writes: lat.length, seconds: secs,
    meanMs: lat.reduce((a, b) => a + b, 0) / lat.length, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: sorted[sorted.length - 1],
    late, agentCpuSeconds: agentCpu() - cpu0,
    agentRssPeak: Math.max(0, ...live), agentRssMean: live.reduce((a, b) => a + b, 0) / Math.max(1, live.length),
    agentRssHwm: agentHwm(), snapshotHeld: held.filter(Boolean).length / Math.max(1, held.length),
    guestBusy: (busy1.busy - busy0.busy) / (busy1.total - busy0.total),
  }));
}
next();
`;
