// The Temporal client of the CLI, the API server and tests.
import { Client, Connection } from '@temporalio/client';
import type { OsrConfig } from '../lib/config/config';
import { temporalAddress, temporalConnectionOptions } from './temporal-connection';

export async function connectClient(config: OsrConfig): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...temporalConnectionOptions(config), connectTimeout: '5s' });
  } catch (err) {
    throw new Error(
      `Cannot reach Temporal at ${temporalAddress(config)} (${(err as Error).message}). Fix: start the embedded stack with \`osr stack up\`, or check temporal.address / OSR_TEMPORAL_ADDRESS.`,
    );
  }
  return new Client({ connection, namespace: config.temporal.namespace });
}
