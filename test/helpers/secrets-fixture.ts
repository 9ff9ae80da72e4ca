// What the secrets tests (secrets*.test.ts) share: a private stack whose storage account is an
// Azurite account with a random key, whose segment key comes from OSR_ENCRYPTION_KEY, with a
// signed alert webhook; the CLI, `osr serve` and HTTPS calls against it.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { loadConfig, type OsrConfig } from '../../lib/config/config';
import { ControlContext } from '../../operations/context';
import { startAzurite } from '../../stack/azurite';
import {
  spawnManaged,
  stopPid,
  waitForLogLine,
  type RunningProcess,
} from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { connectClient } from '../../operations/temporal-client';
import { startTemporalDevServer } from '../../temporal-dev/dev-server';
import { runCli, type CliResult } from './cli';
import { startTestMachine, type TestMachine } from './qemu-machine';
import { createManualPolicy } from './testbed';

export const execFileAsync = promisify(execFile);
export const MiB = 1024 * 1024;
export const M = 'sec1';
export const build = path.resolve(__dirname, '..', '..');
export const cli = path.join(build, 'cli', 'main.js');
export const temporalBinary =
  process.env.OSR_TEMPORAL_BINARY ?? path.resolve(build, '..', '.osr', 'bin', 'temporal');

// The secrets of this stack.
export const encryptionKey = randomBytes(32);
export const account = 'osrsecrets';
export const accountKey = randomBytes(64);
export const webhookSecret = randomBytes(24).toString('base64url');

export let stateDir: string;
export let logs: string;
export let env: NodeJS.ProcessEnv;
export let config: OsrConfig;
export let ctx: ControlContext;
export let client: Client;
export let vm: TestMachine;
export const parts: RunningProcess[] = [];
/** Receives the control worker's alert webhook (signed with webhookSecret). */
export let webhook: http.Server;
/** What every `osr` command of the flow printed: the operator's terminal is a place to leak too. */
export const cliOutput: string[] = [];

export async function osr(...args: string[]): Promise<CliResult> {
  const result = await runCli(args, env);
  cliOutput.push(`$ osr ${args.join(' ')}
${result.stdout}${result.stderr}`);
  return result;
}

export interface ServeProcess {
  child: ChildProcess;
  output: () => string;
  url: string;
  stop(): Promise<void>;
}

/** `osr serve --port 0`, its output to the test (a terminal) or to a log file. */
export async function startServe(logFile?: string): Promise<ServeProcess> {
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const sink = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : undefined;
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      sink?.write(chunk);
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // The last line `osr serve` prints at start says where the token is.
  const ready = /API token[^\n]*\n(?: {2}\S+\nUse it as[^\n]*\n)?/;
  const deadline = Date.now() + 60_000;
  while (!ready.test(text)) {
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('wait'), 100))]);
    if (code !== 'wait') assert.fail(`osr serve exited with ${String(code)}:\n${text}`);
    assert.ok(Date.now() < deadline, `osr serve did not start:\n${text}`);
  }
  const url = /osr API listening on (\S+)/.exec(text)?.[1];
  assert.ok(url, text);
  return {
    child,
    output: () => text,
    url,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      await new Promise<void>((r) => (sink ? sink.end(() => r()) : r()));
    },
  };
}

export interface Reply {
  status: number;
  body: string;
}

export function httpsCall(
  url: string,
  options: { ca?: Buffer; token?: string; method?: string; body?: unknown } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = https.request(
      url,
      {
        method: options.method ?? 'GET',
        ca: options.ca,
        headers: {
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export const tlsDir = () => path.join(stateDir, 'api', 'tls');

/** The private stack for the file's tests (random storage key, segment key, signed webhook); stopped after them. */
export function useSecretsStack(): void {
  before(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'osr-secrets-'));
    logs = path.join(stateDir, 'logs');
    const [temporalPort, azuritePort] = [await freePort(), await freePort()];
    parts.push(
      await startTemporalDevServer({
        binary: temporalBinary,
        port: temporalPort,
        uiPort: 0,
        headless: true,
        namespace: 'default',
        logFile: path.join(logs, 'temporal.log'),
      }),
    );
    // Azurite serves only this account (the public development account is off).
    process.env.AZURITE_ACCOUNTS = `${account}:${accountKey.toString('base64')}`;
    try {
      parts.push(await startAzurite({ port: azuritePort, logFile: path.join(logs, 'azurite.log') }));
    } finally {
      delete process.env.AZURITE_ACCOUNTS;
    }
    webhook = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end());
    });
    await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
    env = {
      ...process.env,
      OSR_ALERT_WEBHOOK_URL: `http://127.0.0.1:${(webhook.address() as { port: number }).port}/alerts`,
      OSR_ALERT_WEBHOOK_SECRET: webhookSecret,
      OSR_CONFIG: path.join(stateDir, 'osr.config.json'),
      OSR_STATE_DIR: stateDir,
      OSR_TEMPORAL_PORT: String(temporalPort),
      OSR_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${accountKey.toString('base64')};BlobEndpoint=http://127.0.0.1:${azuritePort}/${account};`,
      OSR_ENCRYPTION_KEY: encryptionKey.toString('base64'),
      // The most verbose level the workers have: more log lines, more chances to leak.
      OSR_LOG_LEVEL: 'debug',
    };
    delete env.OSR_TEMPORAL_ADDRESS;
    delete env.AZURE_STORAGE_CONNECTION_STRING;
    delete env.OSR_API_TOKEN;
    fs.writeFileSync(env.OSR_CONFIG as string, '{}');
    config = loadConfig({ env });
    client = await connectClient(config);
    for (const role of ['control', 'process-server', 'cloud-applier']) {
      const logFile = path.join(logs, `${role}.log`);
      const proc = spawnManaged({
        name: role,
        command: process.execPath,
        args: [path.join(build, 'workers', `${role}.js`)],
        logFile,
        env,
      });
      parts.push(proc);
      await waitForLogLine(logFile, 'worker polling', proc.exited, 90_000);
    }
    ctx = new ControlContext(config);
    await createManualPolicy(ctx);
    vm = await startTestMachine({ sizes: [16 * MiB] });
  });
  after(async () => {
    await vm?.stop();
    await ctx?.close();
    await client?.connection.close();
    // Workers first, then Azurite and Temporal.
    for (const p of [...parts].reverse()) await stopPid(p.pid, 10_000);
    await new Promise((r) => webhook?.close(r));
    if (!process.env.OSR_KEEP_TEST_STATE) fs.rmSync(stateDir, { recursive: true, force: true });
  });
}
