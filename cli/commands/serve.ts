// `osr serve`: the HTTP API in the foreground until SIGTERM or SIGINT.
import type { Command } from 'commander';
import { startApiServer } from '../../api/server';
import { resolveApiTls } from '../../api/tls';
import { resolveApiToken } from '../../api/token';
import { insecureChannels } from '../../lib/config/channel-security';
import { loadConfig } from '../../lib/config/config';
import { CliError, EXIT } from '../common/output';

function portOf(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new CliError(`--port: expected a port number 0-65535, got ${value}`, EXIT.usage);
  return n;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'serve the HTTP API (OpenAPI document at /openapi.json; bearer tokens with roles on /v1, see `osr tokens`)',
    )
    .option('--host <host>', 'address to listen on (default api.host, 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default api.port, 7780; 0 picks a free one)', portOf)
    .action(async (o: { host?: string; port?: number }) => {
      const config = loadConfig();
      const token = resolveApiToken(config);
      // TLS unless api.insecureHttp: the configured certificate, or a self-signed one made once.
      const tls = await resolveApiTls(config, o.host);
      const served = tls
        ? { ...config, api: { ...config.api, tls: { certPath: tls.certPath, keyPath: tls.keyPath } } }
        : config;
      const api = await startApiServer({ config: served, token: token.token, host: o.host, port: o.port });
      process.stdout.write(`osr API listening on ${api.url} (OpenAPI: ${api.url}/openapi.json)\n`);
      if (tls)
        process.stdout.write(
          `TLS certificate: ${tls.certPath} (${tls.source === 'created' ? 'self-signed, made now' : tls.source === 'existing' ? 'self-signed' : 'api.tls'}; valid until ${tls.validTo})\n` +
            `  SHA-256 fingerprint: ${tls.fingerprint256}\n` +
            (tls.source === 'configured'
              ? ''
              : `  clients trust or pin it, e.g. curl --cacert ${tls.certPath} ${api.url}/healthz\n`),
        );
      else
        process.stdout.write(
          'TLS: off (api.insecureHttp): plain HTTP; the token crosses the network in clear unless a proxy terminates TLS\n',
        );
      for (const w of insecureChannels({
        ...config,
        api: { ...config.api, host: o.host ?? config.api.host },
      }))
        process.stdout.write(`warning: ${w}\n`);
      // The fragment never reaches the server or its logs; the page keeps the token in this tab only.
      process.stdout.write(
        token.source === 'created'
          ? `Dashboard: ${api.url}/#token=${token.token}\n`
          : `Dashboard: ${api.url}/ (enter the token once, or open ${api.url}/#token=<token>)\nMetrics: ${api.url}/metrics (same bearer token)\n`,
      );
      // The token is shown once, when it is made; afterwards only where it lives.
      if (token.source === 'created')
        process.stdout.write(
          `API token (shown once; also in ${token.file}, mode 0600):\n  ${token.token}\nUse it as: Authorization: Bearer <token>\n`,
        );
      else if (token.source === 'file') process.stdout.write(`API token: in ${token.file}\n`);
      else process.stdout.write('API token: from api.token (config or OSR_API_TOKEN)\n');
      process.stdout.write(
        'That token is the admin identity legacy; give each person or system its own: `osr tokens create <name> --role viewer|operator|admin`, then `osr tokens revoke legacy`\n',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          process.stdout.write(`${signal}: stopping the API server\n`);
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await api.close();
    });
}
