// Structured JSON logs (pino). Every process logs to stderr; `osr stack up` redirects each
// process's output into .osr/logs/<name>.log. Secrets are redacted by key name as a second line
// of defence: code must never log them in the first place.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(name: string, level = process.env.OSR_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid, name },
      // Errors are objects whose message and stack are not enumerable: without a serializer they
      // log as "error":{} (the Temporal SDK passes an activity's failure as `error`).
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
      redact: {
        paths: [
          'key',
          '*.key',
          'apiKey',
          '*.apiKey',
          'token',
          '*.token',
          'connectionString',
          '*.connectionString',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination(2),
  );
}
