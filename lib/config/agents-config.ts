// The process servers' listener for Mobility agents (TLS; agents dial out to it): its part of the
// configuration (lib/config/config.ts). `address` is what agents dial (default <hostname>:<port>);
// the certificate is agents.tls or a self-signed one made at the first start under
// <stateDir>/agents/tls. port 0: no listener. compression: what the process server asks of
// agents that can compress their data frames (agent/frame-codec.ts); 'none' asks raw bytes.
// `bundleDir`: the agent folder install and upgrade ship. `seenWriteSeconds`: how often a connected
// agent's sign of life is written to the vault (that write is also where an uninstalled agent is
// refused); shorter means more vault writes, so only tests shorten it. `storeFreeAlertBytes` and
// `storeFreeAlertPoints`: when an agent's point store is low (lib/agents/store-alerts.ts).
import { z } from 'zod';

/** As DEFAULT_STORE_ALERT in lib/agents/store-alerts.ts (a unit test holds them equal). */
const STORE_ALERT = { storeFreeAlertBytes: 1024 * 1024 * 1024, storeFreeAlertPoints: 4 };

export const agentsConfig = z
  .object({
    host: z.string().min(1).default('0.0.0.0'),
    port: z.number().int().min(0).max(65535).default(9443),
    address: z.string().min(1).optional(),
    /** The compiled agent folder that install and upgrade ship (default: this release's dist/agent). */
    bundleDir: z.string().min(1).optional(),
    tls: z
      .object({ certPath: z.string().min(1), keyPath: z.string().min(1) })
      .strict()
      .optional(),
    compression: z.enum(['brotli', 'deflate', 'none']).default('brotli'),
    seenWriteSeconds: z.number().int().min(1).max(120).default(60),
    storeFreeAlertBytes: z.number().int().min(0).default(STORE_ALERT.storeFreeAlertBytes),
    storeFreeAlertPoints: z.number().min(0).max(100).default(STORE_ALERT.storeFreeAlertPoints),
  })
  .strict()
  .default({
    host: '0.0.0.0',
    port: 9443,
    compression: 'brotli',
    seenWriteSeconds: 60,
    ...STORE_ALERT,
  });

export const AGENT_ENV_KEYS: Record<string, { key: string; type: 'string' | 'number' }> = {
  OSR_AGENT_HOST: { key: 'agents.host', type: 'string' },
  OSR_AGENT_PORT: { key: 'agents.port', type: 'number' },
  OSR_AGENT_ADDRESS: { key: 'agents.address', type: 'string' },
  OSR_AGENT_COMPRESSION: { key: 'agents.compression', type: 'string' },
  OSR_AGENT_BUNDLE: { key: 'agents.bundleDir', type: 'string' },
  OSR_AGENT_SEEN_SECONDS: { key: 'agents.seenWriteSeconds', type: 'number' },
  OSR_AGENT_STORE_ALERT_BYTES: { key: 'agents.storeFreeAlertBytes', type: 'number' },
  OSR_AGENT_STORE_ALERT_POINTS: { key: 'agents.storeFreeAlertPoints', type: 'number' },
};
