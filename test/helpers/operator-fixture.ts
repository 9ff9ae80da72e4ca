// What the operator tests (operator*.test.ts) share: the real stack with a webhook receiver that
// answers 500 to each alert's first attempt, a protected machine with a point, the HTTP API, and
// helpers to call it and read its metrics.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before } from 'node:test';
import { startApiServer, type ApiServer } from '../../api/server';
import type { ServerView } from '../../lib/observability/server-health';
import { ControlContext } from '../../operations/context';
import * as machines from '../../operations/machines';
import { createLogger } from '../../lib/config/logger';
import type { WebhookPayload } from '../../workers/alert-notifier';
import { pseudoRandom, startTestMachine, type TestMachine } from './qemu-machine';
import { startTestStack, type TestStack } from './test-stack';
import { createManualPolicy, protectManual } from './testbed';
import { pollFor } from './poll';

export const run = promisify(execFile);
export const MiB = 1024 * 1024;
export const M = 'op-vm1';
export const token = randomBytes(32).toString('base64url');
export const webhookSecret = randomBytes(24).toString('hex');
export const cliMain = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
export const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-dashboard-'));

export interface Delivery {
  payload: WebhookPayload;
  signature: string | undefined;
  body: string;
  answered: number;
}

export let stack: TestStack;
export let ctx: ControlContext;
export let vm: TestMachine;
export let api: ApiServer;
export let webhook: http.Server;
export const deliveries: Delivery[] = [];
export const failedOnce = new Set<string>();

export async function get(pathname: string, headers: Record<string, string> = {}) {
  return fetch(`${api.url}${pathname}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  return pollFor(probe, {
    timeoutMs,
    intervalMs: 250,
    failure: (last) => new Error(`timed out waiting for ${what} ${last ? String(last) : ''}`),
  });
}

export async function servers(): Promise<ServerView[]> {
  return ((await (await get('/v1/servers')).json()) as { servers: ServerView[] }).servers;
}

/** Parses exposition text: family → type, and samples; fails on a sample outside a declared family. */
export function parseExposition(text: string) {
  const types = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      assert.ok(!types.has(type[1] as string), `family ${type[1]} declared once`);
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a valid sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[k as string] = v as string;
    const name = m[1] as string;
    const family = [...types.keys()].find((f) => name === f || name.startsWith(`${f}_`));
    assert.ok(family, `sample ${name} belongs to a declared family`);
    samples.push({ name, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

/** The stack, a protected machine with a point, the API and a webhook receiver that fails each alert's first attempt; stopped after the file's tests. */
export function useOperatorStack(): void {
  before(async () => {
    // The webhook receiver answers 500 to the first attempt of each alert: the notifier must retry.
    webhook = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const payload = JSON.parse(body) as WebhookPayload;
        const status = failedOnce.has(payload.alert.id) ? 200 : 500;
        failedOnce.add(payload.alert.id);
        deliveries.push({
          payload,
          body,
          signature: req.headers['x-osr-signature'] as string,
          answered: status,
        });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
    const { port } = webhook.address() as AddressInfo;
    stack = await startTestStack({
      extraEnv: {
        OSR_ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/osr`,
        OSR_ALERT_WEBHOOK_SECRET: webhookSecret,
        OSR_ALERT_INTERVAL_SECONDS: '1',
        OSR_HEARTBEAT_SECONDS: '1',
        OSR_HEALTH_STALE_SECONDS: '6',
      },
    });
    await Promise.all([
      stack.startWorker('control'),
      stack.startWorker('cloud-applier'),
      // Any process uses more than 1 byte: this process server reports memory pressure.
      stack.startWorker('process-server', { OSR_HEALTH_RSS_ALERT_BYTES: '1' }),
    ]);
    ctx = new ControlContext(stack.config);
    await createManualPolicy(ctx);
    vm = await startTestMachine({ sizes: [16 * MiB] });
    await protectManual(ctx, M, vm);
    const disk = await vm.disk();
    await disk.write(0, pseudoRandom(2 * MiB, 11));
    await disk.flush();
    await machines.takePoint(ctx, M, { kind: 'crash', tag: 'operator-test' });
    api = await startApiServer({
      config: stack.config,
      token,
      host: '127.0.0.1',
      port: 0,
      ctx,
      logger: createLogger('api-test', 'warn'),
    });
  });
  after(async () => {
    await api?.close();
    await vm?.stop();
    await ctx?.close();
    await stack?.stop();
    await new Promise((r) => webhook?.close(r));
    if (!process.env.OSR_KEEP_TEST_STATE) fs.rmSync(shots, { recursive: true, force: true });
    else process.stdout.write(`dashboard screenshots in ${shots}\n`);
  });
}
