// The alert notifier (in the control worker): every alerts.intervalSeconds it reads the current
// alerts (shared/operations/alerts.ts; workflows are only queried, never changed) and POSTs each
// alert id it has not sent before to alerts.webhookUrl, once. Delivery is retried with exponential
// backoff (1 s, 2 s, 4 s … at most 5 min). Each id is remembered in the vault
// (alerts/sent/<sha256 of the id>.json, created only if absent): a restarted notifier, or a second
// control worker, does not send it again. A delivery a dead notifier left pending is taken over
// after PENDING_TAKEOVER_MS.
import { createHash, createHmac } from 'node:crypto';
import os from 'node:os';
import type { OsrConfig } from '../lib/config/config';
import type { NotifierHealth } from '../lib/observability/server-health';
import type { Logger } from '../lib/config/logger';
import { listAlerts, type OsrAlert } from '../operations/alerts';
import { ControlContext } from '../operations/context';
import { VaultConflictError } from '../lib/azure/vault';

export const SENT_PREFIX = 'alerts/sent/';
const PENDING_TAKEOVER_MS = 120_000;
const MAX_BACKOFF_MS = 300_000;
const ATTEMPT_TIMEOUT_MS = 10_000;

export interface DeliveryRecord {
  id: string;
  state: 'pending' | 'sent';
  owner: string;
  attempts: number;
  firstSeenAt: string;
  updatedAt: string;
  sentAt?: string;
  lastError?: string;
  alert: OsrAlert;
}

/** The JSON body POSTed to the webhook. */
export interface WebhookPayload {
  type: 'osr.alert';
  alert: OsrAlert;
  site: string;
  sentAt: string;
  attempt: number;
}

export const sentDoc = (alertId: string) =>
  `${SENT_PREFIX}${createHash('sha256').update(alertId).digest('hex').slice(0, 40)}.json`;

interface Pending {
  record: DeliveryRecord;
  etag: string;
  nextAt: number;
}

export interface AlertNotifier {
  health(): NotifierHealth;
  /** One pass now: read alerts, claim new ones, deliver what is due. */
  pass(): Promise<void>;
  stop(): Promise<void>;
}

export function startAlertNotifier(options: { config: OsrConfig; log: Logger }): AlertNotifier {
  const { config, log } = options;
  let ctx = new ControlContext(config);
  const owner = `control-${os.hostname()}`;
  const url = config.alerts.webhookUrl;
  const sent = new Set<string>();
  const pending = new Map<string, Pending>();
  let passes = 0;
  let lastPassAt: string | undefined;
  let lastError: string | undefined;
  let loaded = false;
  let stopped = false;
  let lastCollect = 0;
  let running: Promise<void> = Promise.resolve();

  const load = async () => {
    for (const name of await ctx.vault.listNames(SENT_PREFIX)) {
      const doc = await ctx.vault.read<DeliveryRecord>(name);
      if (!doc) continue;
      if (doc.value.state === 'sent') sent.add(doc.value.id);
      else if (
        doc.value.owner === owner ||
        Date.now() - Date.parse(doc.value.updatedAt) > PENDING_TAKEOVER_MS
      )
        pending.set(doc.value.id, { record: doc.value, etag: doc.etag, nextAt: Date.now() });
    }
    loaded = true;
  };

  /** Claims a new alert for delivery; false if another notifier has it (or it was sent). */
  const claim = async (alert: OsrAlert): Promise<void> => {
    const now = new Date().toISOString();
    const record: DeliveryRecord = {
      id: alert.id,
      state: 'pending',
      owner,
      attempts: 0,
      firstSeenAt: now,
      updatedAt: now,
      alert,
    };
    try {
      const etag = await ctx.vault.write(sentDoc(alert.id), record);
      pending.set(alert.id, { record, etag, nextAt: Date.now() });
    } catch (err) {
      if (!(err instanceof VaultConflictError)) throw err;
      const current = await ctx.vault.read<DeliveryRecord>(sentDoc(alert.id));
      if (current?.value.state === 'sent') sent.add(alert.id);
      else if (current && Date.now() - Date.parse(current.value.updatedAt) > PENDING_TAKEOVER_MS)
        pending.set(alert.id, { record: current.value, etag: current.etag, nextAt: Date.now() });
    }
  };

  const deliver = async (p: Pending): Promise<void> => {
    const { record } = p;
    const payload: WebhookPayload = {
      type: 'osr.alert',
      alert: record.alert,
      site: config.site,
      sentAt: new Date().toISOString(),
      attempt: record.attempts + 1,
    };
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'open-site-recovery-alerts/1',
      'x-osr-alert-id': record.id,
    };
    if (config.alerts.webhookSecret)
      headers['x-osr-signature'] =
        `sha256=${createHmac('sha256', config.alerts.webhookSecret).update(body).digest('hex')}`;
    let error: string | undefined;
    try {
      const res = await fetch(url as string, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) error = `HTTP ${res.status}`;
    } catch (err) {
      error = (err as Error).message;
    }
    record.attempts += 1;
    record.updatedAt = new Date().toISOString();
    if (error === undefined) {
      record.state = 'sent';
      record.sentAt = record.updatedAt;
      delete record.lastError;
    } else {
      record.lastError = error;
      p.nextAt = Date.now() + Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (record.attempts - 1));
      log.warn(
        { alert: record.id, attempts: record.attempts, err: error },
        'alert webhook failed; will retry',
      );
    }
    try {
      p.etag = await ctx.vault.write(sentDoc(record.id), record, p.etag);
    } catch (err) {
      // Someone took the delivery over (we were thought dead): leave it to them.
      if (err instanceof VaultConflictError) {
        pending.delete(record.id);
        return;
      }
      throw err;
    }
    if (record.state === 'sent') {
      pending.delete(record.id);
      sent.add(record.id);
      log.info({ alert: record.id, attempts: record.attempts }, 'alert sent to the webhook');
    }
  };

  const pass = async (): Promise<void> => {
    if (!loaded) await load();
    if (Date.now() - lastCollect >= config.alerts.intervalSeconds * 1000) {
      lastCollect = Date.now();
      const { alerts, problems } = await listAlerts(ctx);
      if (problems.length) {
        log.warn({ problems }, 'some alert sources could not be read');
        // A context keeps a failed Temporal connection: start afresh for the next pass.
        const broken = ctx;
        ctx = new ControlContext(config);
        void broken.close().catch(() => undefined);
      }
      for (const alert of alerts) if (!sent.has(alert.id) && !pending.has(alert.id)) await claim(alert);
      passes += 1;
      lastPassAt = new Date().toISOString();
    }
    for (const p of [...pending.values()]) if (p.nextAt <= Date.now() && !stopped) await deliver(p);
  };

  const tick = () => {
    running = running
      .then(() => (stopped ? undefined : pass()))
      .then(
        () => {
          lastError = undefined;
        },
        (err: unknown) => {
          lastError = (err as Error).message;
          log.warn({ err: lastError }, 'alert notifier pass failed');
        },
      );
  };
  // Collection runs every intervalSeconds; retries are checked every second between.
  const timer = setInterval(tick, Math.min(1000, config.alerts.intervalSeconds * 1000));
  timer.unref();
  if (url) {
    log.info({ webhook: redactUrl(url) }, 'alert notifier started');
    tick();
  } else {
    clearInterval(timer);
    log.info('alert notifier off: no alerts.webhookUrl (OSR_ALERT_WEBHOOK_URL)');
  }

  return {
    health: () => ({
      passes,
      lastPassAt,
      lastError,
      webhook: url ? redactUrl(url) : undefined,
      sent: sent.size,
      pending: pending.size,
    }),
    pass: async () => {
      tick();
      await running;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await ctx.close();
    },
  };
}

/** The webhook's origin and path, without credentials or query (which may hold a token). */
function redactUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}
