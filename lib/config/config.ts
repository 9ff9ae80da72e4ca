// One validated configuration for every OSR process. Sources, later ones winning: built-in defaults
// < the config file (OSR_CONFIG or ./osr.config.json) < OSR_* environment variables. Nothing here
// starts anything: no `temporal.address` / `storage.connectionString` means the embedded ones.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { AGENT_ENV_KEYS, agentsConfig } from './agents-config';
import { CONTAINER_KEYS, STORAGE_ROLES } from './storage-roles';

const hostPort = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, for example 127.0.0.1:7233 or my-ns.tmprl.cloud:7233');
const port = z.number().int().min(1).max(65535);

export const configSchema = z
  .object({
    stateDir: z.string().min(1).default('.osr'),
    site: z
      .string()
      .regex(/^[a-z0-9-]{1,40}$/, 'lower-case letters, digits and dashes')
      .default('primary'),
    // Reprotect: the recovery site's process-server role reads the failed-over machines (the
    // recovery-site QEMU host) on processServerQueue(recoverySite).
    recoverySite: z
      .string()
      .regex(/^[a-z0-9-]{1,40}$/, 'lower-case letters, digits and dashes')
      .default('recovery'),
    // Whether this process server also polls the recovery site's queue: auto = yes when Temporal
    // is embedded (the embedded stack is one host playing both sites).
    serveRecoverySite: z.enum(['auto', 'yes', 'no']).default('auto'),
    temporal: z
      .object({
        address: hostPort.optional(),
        namespace: z.string().min(1).default('default'),
        port: port.default(7233),
        uiPort: port.default(8233),
        apiKey: z.string().min(1).optional(),
        tls: z
          .object({
            serverName: z.string().optional(),
            serverRootCaPath: z.string().optional(),
            clientCertPath: z.string().optional(),
            clientKeyPath: z.string().optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({ namespace: 'default', port: 7233, uiPort: 8233 }),
    storage: z
      .object({
        // How OSR signs in to storage (docs/configuration.md, "Storage sign-in"): key = the account
        // key in connectionString (or the embedded Azurite); sas = container SAS URLs per role;
        // entra = Microsoft Entra ID (DefaultAzureCredential) against accountUrl.
        auth: z.enum(['key', 'sas', 'entra']).default('key'),
        connectionString: z.string().min(1).optional(),
        accountUrl: z.url({ protocol: /^https?$/ }).optional(),
        // Trusted besides the system's CAs for the storage endpoint (a private CA, Azurite's own certificate).
        caFile: z.string().min(1).optional(),
        sas: z
          .partialRecord(z.enum(STORAGE_ROLES), z.partialRecord(z.enum(CONTAINER_KEYS), z.string().min(1)))
          .default({}),
        azuritePort: port.default(10000),
        // Each try of a blob request gets no answer for this long: it is aborted and retried.
        tryTimeoutSeconds: z.number().min(0.1).max(3600).default(60),
        // Tries per blob request (throttling, time-outs, network errors), with exponential backoff.
        maxTries: z.number().int().min(1).max(20).default(5),
      })
      .strict()
      .superRefine((storage, ctx) => {
        if (storage.auth === 'entra' && !storage.accountUrl)
          ctx.addIssue({
            code: 'custom',
            path: ['accountUrl'],
            message:
              'storage.auth "entra" needs the account\'s blob endpoint: set storage.accountUrl (OSR_STORAGE_ACCOUNT_URL), e.g. https://<account>.blob.core.windows.net',
          });
        if (storage.auth === 'key' && Object.keys(storage.sas).length > 0)
          ctx.addIssue({
            code: 'custom',
            path: ['sas'],
            message:
              'storage.sas is set but storage.auth is "key": set storage.auth to "sas" (OSR_STORAGE_AUTH=sas) or remove storage.sas',
          });
      })
      .default({ auth: 'key', azuritePort: 10000, tryTimeoutSeconds: 60, maxTries: 5, sas: {} }),
    encryption: z
      .object({
        keyFile: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    pipeline: z
      .object({
        threads: z.number().int().min(1).max(64).default(2),
        maxBytesInFlight: z
          .number()
          .int()
          .min(4 * 1024 * 1024)
          .default(64 * 1024 * 1024),
        uploadConcurrency: z.number().int().min(1).max(64).default(8),
      })
      .strict()
      .default({ threads: 2, maxBytesInFlight: 64 * 1024 * 1024, uploadConcurrency: 8 }),
    // `osr serve`: loopback by default so the API is never exposed by accident.
    api: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: port.default(7780),
        token: z.string().min(16, 'use at least 16 characters').optional(),
        tokenFile: z.string().min(1).optional(),
        maxBodyBytes: z
          .number()
          .int()
          .min(1024)
          .max(16 * 1024 * 1024)
          .default(64 * 1024),
        tls: z
          .object({ certPath: z.string().min(1), keyPath: z.string().min(1) })
          .strict()
          .optional(),
        // Without api.tls, `osr serve` makes a self-signed certificate at its first start
        // (<stateDir>/api/tls); true serves plain HTTP instead (behind a TLS-terminating proxy).
        insecureHttp: z.boolean().default(false),
        // Changing routes (POST) per identity: `burst` at once, refilled at `perMinute` (429 beyond).
        rateLimit: z
          .object({
            perMinute: z.number().min(1).max(100_000).default(60),
            burst: z.number().int().min(1).max(100_000).default(20),
          })
          .strict()
          .default({ perMinute: 60, burst: 20 }),
      })
      .strict()
      .default({
        host: '127.0.0.1',
        port: 7780,
        maxBodyBytes: 64 * 1024,
        insecureHttp: false,
        rateLimit: { perMinute: 60, burst: 20 },
      }),
    agents: agentsConfig,
    // Four eyes (docs/security.md): plan failovers and commits wait for a second identity's approval.
    approvals: z
      .object({
        required: z.boolean().default(false),
        expireSeconds: z
          .number()
          .int()
          .min(1)
          .max(30 * 86400)
          .default(86400),
      })
      .strict()
      .default({ required: false, expireSeconds: 86400 }),
    // Operator experience: alert webhook, worker heartbeats (osr servers) and their thresholds,
    // the Temporal SDK's Prometheus exporter in each worker.
    alerts: z
      .object({
        webhookUrl: z.url({ protocol: /^https?$/ }).optional(),
        webhookSecret: z.string().min(16, 'use at least 16 characters').optional(),
        intervalSeconds: z.number().min(0.2).max(3600).default(15),
      })
      .strict()
      .default({ intervalSeconds: 15 }),
    health: z
      .object({
        heartbeatSeconds: z.number().min(0.2).max(3600).default(15),
        staleSeconds: z.number().min(1).max(86400).default(60),
        rssAlertBytes: z
          .number()
          .int()
          .min(1)
          .default(4 * 1024 * 1024 * 1024),
        backlogAlertRatio: z.number().min(0).max(1).default(0.9),
        stateDiskFreeAlertRatio: z.number().min(0).max(1).default(0.1),
      })
      .strict()
      // Absent: each field's own default (one place for them).
      .prefault({}),
    metrics: z
      .object({
        sdkExporter: z.boolean().default(true),
        sdkBindAddress: hostPort.optional(),
      })
      .strict()
      .default({ sdkExporter: true }),
    // The azure recovery target: Azure Resource Manager, where drills and failovers make managed
    // disks, NICs and VMs. Unset subscriptionId: the azure target is refused with the fix.
    azure: z
      .object({
        subscriptionId: z.guid('a subscription id is a GUID').optional(),
        armEndpoint: z.url({ protocol: /^https$/ }).default('https://management.azure.com'),
        // The storage account holding osr-failover (its ARM resource id): disks import from it.
        storageAccountId: z
          .string()
          .regex(
            /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Storage\/storageAccounts\/[^/]+$/i,
            'a storage account resource id: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<name>',
          )
          .optional(),
        location: z.string().min(1).optional(),
        // Where drills land unless a machine's settings name another isolated subnet.
        drillSubnetId: z.string().min(1).optional(),
        // PEM file of the CA that signs the ARM endpoint's certificate (replaces the default trust for ARM calls only).
        caFile: z.string().min(1).optional(),
        // A file holding an ARM access token, read at every request (written by a sidecar, or a test's
        // stand-in); unset: DefaultAzureCredential (managed identity, workload identity, service principal…).
        tokenFile: z.string().min(1).optional(),
        // How often a long-running ARM operation is polled when ARM gives no Retry-After.
        pollIntervalSeconds: z.number().min(0.05).max(60).default(2),
      })
      .strict()
      .default({ armEndpoint: 'https://management.azure.com', pollIntervalSeconds: 2 }),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

export type OsrConfig = z.infer<typeof configSchema>;

/** Environment variables and the config key each one sets. */
export const ENV_KEYS: Record<string, { key: string; type: 'string' | 'number' }> = {
  OSR_STATE_DIR: { key: 'stateDir', type: 'string' },
  OSR_SITE: { key: 'site', type: 'string' },
  OSR_RECOVERY_SITE: { key: 'recoverySite', type: 'string' },
  OSR_SERVE_RECOVERY_SITE: { key: 'serveRecoverySite', type: 'string' },
  OSR_TEMPORAL_ADDRESS: { key: 'temporal.address', type: 'string' },
  OSR_TEMPORAL_NAMESPACE: { key: 'temporal.namespace', type: 'string' },
  OSR_TEMPORAL_PORT: { key: 'temporal.port', type: 'number' },
  OSR_TEMPORAL_UI_PORT: { key: 'temporal.uiPort', type: 'number' },
  OSR_TEMPORAL_API_KEY: { key: 'temporal.apiKey', type: 'string' },
  OSR_STORAGE_CONNECTION_STRING: { key: 'storage.connectionString', type: 'string' },
  AZURE_STORAGE_CONNECTION_STRING: { key: 'storage.connectionString', type: 'string' },
  OSR_STORAGE_AUTH: { key: 'storage.auth', type: 'string' },
  OSR_STORAGE_ACCOUNT_URL: { key: 'storage.accountUrl', type: 'string' },
  OSR_STORAGE_CA_FILE: { key: 'storage.caFile', type: 'string' },
  ...sasEnvKeys(),
  OSR_AZURITE_PORT: { key: 'storage.azuritePort', type: 'number' },
  OSR_STORAGE_TRY_TIMEOUT_SECONDS: { key: 'storage.tryTimeoutSeconds', type: 'number' },
  OSR_STORAGE_MAX_TRIES: { key: 'storage.maxTries', type: 'number' },
  OSR_KEY_FILE: { key: 'encryption.keyFile', type: 'string' },
  OSR_ENCRYPTION_KEY: { key: 'encryption.key', type: 'string' },
  OSR_PIPELINE_THREADS: { key: 'pipeline.threads', type: 'number' },
  OSR_UPLOAD_CONCURRENCY: { key: 'pipeline.uploadConcurrency', type: 'number' },
  OSR_LOG_LEVEL: { key: 'log.level', type: 'string' },
  ...AGENT_ENV_KEYS,
  OSR_API_HOST: { key: 'api.host', type: 'string' },
  OSR_API_PORT: { key: 'api.port', type: 'number' },
  OSR_API_TOKEN: { key: 'api.token', type: 'string' },
  OSR_API_TOKEN_FILE: { key: 'api.tokenFile', type: 'string' },
  OSR_ALERT_WEBHOOK_URL: { key: 'alerts.webhookUrl', type: 'string' },
  OSR_ALERT_WEBHOOK_SECRET: { key: 'alerts.webhookSecret', type: 'string' },
  OSR_ALERT_INTERVAL_SECONDS: { key: 'alerts.intervalSeconds', type: 'number' },
  OSR_HEARTBEAT_SECONDS: { key: 'health.heartbeatSeconds', type: 'number' },
  OSR_HEALTH_STALE_SECONDS: { key: 'health.staleSeconds', type: 'number' },
  OSR_HEALTH_RSS_ALERT_BYTES: { key: 'health.rssAlertBytes', type: 'number' },
  OSR_SDK_METRICS_ADDRESS: { key: 'metrics.sdkBindAddress', type: 'string' },
  OSR_AZURE_SUBSCRIPTION_ID: { key: 'azure.subscriptionId', type: 'string' },
  OSR_AZURE_ARM_ENDPOINT: { key: 'azure.armEndpoint', type: 'string' },
  OSR_AZURE_STORAGE_ACCOUNT_ID: { key: 'azure.storageAccountId', type: 'string' },
  OSR_AZURE_LOCATION: { key: 'azure.location', type: 'string' },
  OSR_AZURE_DRILL_SUBNET_ID: { key: 'azure.drillSubnetId', type: 'string' },
  OSR_AZURE_CA_FILE: { key: 'azure.caFile', type: 'string' },
  OSR_AZURE_TOKEN_FILE: { key: 'azure.tokenFile', type: 'string' },
  OSR_AZURE_POLL_INTERVAL_SECONDS: { key: 'azure.pollIntervalSeconds', type: 'number' },
};

/** OSR_STORAGE_SAS_<ROLE>_<CONTAINER>, e.g. OSR_STORAGE_SAS_PROCESS_SERVER_CACHE → storage.sas.process-server.cache. */
function sasEnvKeys(): Record<string, { key: string; type: 'string' }> {
  const out: Record<string, { key: string; type: 'string' }> = {};
  for (const role of STORAGE_ROLES)
    for (const container of CONTAINER_KEYS)
      out[`OSR_STORAGE_SAS_${role.replace('-', '_').toUpperCase()}_${container.toUpperCase()}`] = {
        key: `storage.sas.${role}.${container}`,
        type: 'string',
      };
  return out;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    node[part] = typeof next === 'object' && next !== null ? next : {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1] as string] = value;
}

function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, { key, type }] of Object.entries(ENV_KEYS)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    if (type === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n)) {
        throw new ConfigError(
          `Environment variable ${name}=${JSON.stringify(raw)} is not a number. Fix: set ${name} to a number or unset it.`,
        );
      }
      setPath(out, key, n);
    } else {
      setPath(out, key, raw);
    }
  }
  return out;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    const bothObjects =
      typeof v === 'object' && v !== null && !Array.isArray(v) && typeof prev === 'object' && prev !== null;
    out[k] = bothObjects ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Names the source of a key, so an error tells the operator where to fix it. */
function sourceOf(key: string, fileName: string | undefined, env: NodeJS.ProcessEnv): string {
  const fromEnv = Object.entries(ENV_KEYS).find(([name, spec]) => spec.key === key && env[name]);
  if (fromEnv) return `environment variable ${fromEnv[0]}`;
  return fileName ? `"${key}" in ${fileName}` : `"${key}"`;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Explicit config file; otherwise OSR_CONFIG, then ./osr.config.json if present. */
  file?: string;
  cwd?: string;
}

export function loadConfig(options: LoadOptions = {}): OsrConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.file ?? env.OSR_CONFIG;
  const candidate = explicit ?? path.join(cwd, 'osr.config.json');
  let fromFile: Record<string, unknown> = {};
  let fileName: string | undefined;
  if (fs.existsSync(candidate)) {
    fileName = candidate;
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(candidate, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error('the top level must be a JSON object');
      }
      fromFile = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(
        `Config file ${candidate} is not valid JSON: ${(err as Error).message}. Fix the file or point OSR_CONFIG elsewhere.`,
      );
    }
  } else if (explicit) {
    throw new ConfigError(
      `Config file ${explicit} does not exist. Fix: create it, or unset OSR_CONFIG / --config.`,
    );
  }

  const merged = deepMerge(fromFile, envOverrides(env));
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.join('.');
      if (issue.code === 'unrecognized_keys') {
        const where = key ? `${key}.` : '';
        return `unknown key ${issue.keys.map((k) => `"${where}${k}"`).join(', ')}${fileName ? ` in ${fileName}` : ''}: remove it or check its spelling (see docs/configuration.md)`;
      }
      return `${sourceOf(key, fileName, env)}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid OSR configuration:\n  - ${problems.join('\n  - ')}`);
  }
  const config = result.data;
  config.stateDir = path.resolve(cwd, config.stateDir);
  if (config.encryption.keyFile) config.encryption.keyFile = path.resolve(cwd, config.encryption.keyFile);
  if (config.storage.caFile) config.storage.caFile = path.resolve(cwd, config.storage.caFile);
  if (config.api.tokenFile) config.api.tokenFile = path.resolve(cwd, config.api.tokenFile);
  if (config.azure.caFile) config.azure.caFile = path.resolve(cwd, config.azure.caFile);
  if (config.azure.tokenFile) config.azure.tokenFile = path.resolve(cwd, config.azure.tokenFile);
  if (config.api.tls) {
    config.api.tls.certPath = path.resolve(cwd, config.api.tls.certPath);
    config.api.tls.keyPath = path.resolve(cwd, config.api.tls.keyPath);
  }
  return config;
}
