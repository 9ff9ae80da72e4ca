// A shell command run inside a libvirt domain through its guest agent (guest-exec), for tests
// whose guest has no wired command-line port (a domain recovered by OSR).
import { virsh } from '../../lib/libvirt/virsh';
import { pollFor } from './poll';

/** Runs a shell command inside a domain through its guest agent (guest-exec); its exit code. */
export async function guestExec(uri: string, domain: string, command: string): Promise<number> {
  const agent = async (execute: string, args: object) =>
    (
      JSON.parse(
        await virsh(uri, [
          'qemu-agent-command',
          '--timeout',
          '10',
          '--',
          domain,
          JSON.stringify({ execute, arguments: args }),
        ]),
      ) as { return: { pid?: number; exited?: boolean; exitcode?: number; 'err-data'?: string } }
    ).return;
  const { pid } = await agent('guest-exec', {
    path: '/bin/sh',
    arg: ['-c', command],
    'capture-output': true,
  });
  const done = await pollFor(
    async () => {
      const s = await agent('guest-exec-status', { pid });
      return s.exited ? s : undefined;
    },
    {
      timeoutMs: 60_000,
      intervalMs: 200,
      failure: (last) => new Error(`guest-exec ${command}: ${String(last)}`),
    },
  );
  if (done.exitcode !== 0)
    throw new Error(
      `${command}: exit ${done.exitcode}: ${Buffer.from(done['err-data'] ?? '', 'base64').toString()}`,
    );
  return done.exitcode;
}
