// The HTTP API (`osr serve`) on a free local port against a testbed's stack, for the tests that call it.
import { startApiServer, type ApiServer } from '../../api/server';
import type { OsrConfig } from '../../lib/config/config';
import { createLogger } from '../../lib/config/logger';
import type { Testbed } from './testbed';

/**
 * The configuration with the per-identity rate limit out of the way, for tests that send many
 * changing requests to test something else (the limit has its own test in access.test.ts).
 */
export function withoutRateLimit(config: OsrConfig): OsrConfig {
  return { ...config, api: { ...config.api, rateLimit: { perMinute: 100_000, burst: 100_000 } } };
}

export async function startTestApi(bed: Testbed, token: string, loggerName: string): Promise<ApiServer> {
  return startApiServer({
    config: withoutRateLimit(bed.stack.config),
    token,
    host: '127.0.0.1',
    port: 0,
    ctx: bed.ctx,
    logger: createLogger(loggerName, 'warn'),
  });
}
