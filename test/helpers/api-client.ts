// The HTTP API (`osr serve`) on a free local port against a testbed's stack, for the tests that call it.
import { startApiServer, type ApiServer } from '../../api/server';
import { createLogger } from '../../lib/config/logger';
import type { Testbed } from './testbed';

export async function startTestApi(bed: Testbed, token: string, loggerName: string): Promise<ApiServer> {
  return startApiServer({
    config: bed.stack.config,
    token,
    host: '127.0.0.1',
    port: 0,
    ctx: bed.ctx,
    logger: createLogger(loggerName, 'warn'),
  });
}
