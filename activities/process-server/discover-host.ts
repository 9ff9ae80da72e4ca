// `osr host add` and `osr discover`: a host's machines, seen from a process server of that host
// (its own task queue), since only it may reach the host (a socket directory, a vCenter behind a
// firewall, qemu:///system). Every failure is a HostRefused with the reason and its fix: the
// caller registers nothing and shows the message.
import { ApplicationFailure } from '@temporalio/common';
import type { DiscoveredMachine, HostRecord } from '../../shared/host-types';
import { FAILURE } from '../../shared/failures';
import { VsphereError } from '../../lib/vsphere/errors';
import { SocketDirError } from '../../lib/qemu/socket-discovery';
import { DiscoveryUnavailable, discoverWith, type RegisteredSource } from './host-discoverers';

export interface DiscoverHostInput {
  host: HostRecord;
  registered: RegisteredSource[];
}

export async function discoverHost(input: DiscoverHostInput): Promise<{ machines: DiscoveredMachine[] }> {
  try {
    return { machines: await discoverWith(input.host, input.registered) };
  } catch (err) {
    const problem =
      err instanceof VsphereError
        ? err.problem
        : err instanceof SocketDirError
          ? 'not-found'
          : err instanceof DiscoveryUnavailable
            ? 'unavailable'
            : 'failed';
    throw ApplicationFailure.create({
      message: `host ${input.host.name}: ${(err as Error).message}`,
      type: FAILURE.HostRefused,
      nonRetryable: true,
      details: [{ problem }],
    });
  }
}
