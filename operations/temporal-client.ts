// The Temporal client of the CLI, the API server and tests. The SDK (gRPC, protobufs) is loaded
// only when a client is opened: most refusals and vault-only commands of the CLI never need it,
// and it was the largest part of every `osr` command's start.
import type { Client, Connection } from '@temporalio/client';
import type { OsrConfig } from '../lib/config/config';
import { isEmbeddedTemporal, temporalAddress, temporalConnectionOptions } from './temporal-connection';

export async function connectClient(config: OsrConfig): Promise<Client> {
  const { Client, Connection } = await import('@temporalio/client');
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...temporalConnectionOptions(config), connectTimeout: '5s' });
  } catch (err) {
    // A frontend that requires TLS or a client certificate looks like one that is not there.
    const fix = isEmbeddedTemporal(config)
      ? 'start the embedded stack with `osr stack up`, or check temporal.address / OSR_TEMPORAL_ADDRESS'
      : 'check temporal.address / OSR_TEMPORAL_ADDRESS, and temporal.tls (server CA, server name, client certificate and key) or temporal.apiKey if the frontend requires TLS';
    throw new Error(
      `Cannot reach Temporal at ${temporalAddress(config)} (${(err as Error).message}). Fix: ${fix}.`,
    );
  }
  return new Client({ connection, namespace: config.temporal.namespace });
}
