// Adding and removing hosts. Adding asks a process server of the host to read it first (the
// discoverHost workflow, on the host's own queue) and registers nothing when it does not answer as
// given: unreachable, wrong credentials, a certificate neither trusted nor pinned, a missing socket
// directory, no process server for the host. The check runs there, not in the CLI, because that
// is where discovery and protection will run: a socket directory exists only on its host, and a
// vCenter must be reachable, and its certificate the pinned one, from the process server.
import path from 'node:path';
import { libvirtUriProblem } from '../lib/libvirt/remote-host';
import { normalizeFingerprint } from '../lib/vsphere/pinned-tls';
import { hostDoc, type HostConnection, type HostRecord } from '../shared/host-types';
import { checkName } from '../shared/names';
import { audited } from './audit';
import { OperationError, type ControlContext } from './context';
import { discoverOn, discoveryRefusal } from './discovery';
import { getHost, storeHost } from './hosts';

export interface AddHostResult {
  host: HostRecord;
  /** How many machines the check found on it. */
  machines: number;
}

const invalid = (message: string) => new OperationError(message, 'invalid');

/** A connection as given (CLI flags, API body), checked and put in its stored form. */
export function checkConnection(c: HostConnection): HostConnection {
  switch (c.kind) {
    case 'vcenter': {
      let url: URL;
      try {
        url = new URL(c.url);
      } catch {
        throw invalid(`--vcenter ${JSON.stringify(c.url)} is not a URL: give https://<vcenter>/sdk`);
      }
      if (url.protocol !== 'https:')
        throw invalid(
          `--vcenter must be an https:// URL (the vSphere API is served over TLS), not ${url.protocol}//`,
        );
      if (url.username || url.password)
        throw invalid('--vcenter must not carry a user or password: give --user and --password-file');
      if (url.pathname === '/') url.pathname = '/sdk';
      if (!c.user)
        throw invalid('a vCenter host needs --user (the account discovery reads the inventory as)');
      if (!c.passwordFile || !path.isAbsolute(c.passwordFile))
        throw invalid(
          `--password-file must be an absolute path on the host's process server (got ${JSON.stringify(c.passwordFile ?? '')})`,
        );
      let thumbprint: string | undefined;
      if (c.thumbprint !== undefined) {
        thumbprint = normalizeFingerprint(c.thumbprint);
        if (!thumbprint)
          throw invalid(
            `--thumbprint ${JSON.stringify(c.thumbprint)} is not a SHA-256 fingerprint: give the 64 hex digits (colons allowed) that \`osr host add\` showed or \`openssl x509 -fingerprint -sha256\` prints`,
          );
      }
      return {
        kind: 'vcenter',
        url: url.toString(),
        user: c.user,
        passwordFile: c.passwordFile,
        ...(thumbprint ? { thumbprint } : {}),
      };
    }
    case 'sockets':
      if (!c.dir || !path.isAbsolute(c.dir))
        throw invalid(
          `--sockets must be an absolute directory path on the host (got ${JSON.stringify(c.dir ?? '')})`,
        );
      return { kind: 'sockets', dir: path.normalize(c.dir) };
    case 'libvirt': {
      const problem = libvirtUriProblem(c.uri ?? '');
      if (problem) throw invalid(`--libvirt: ${problem}`);
      return { kind: 'libvirt', uri: c.uri };
    }
    default:
      throw invalid(
        `unknown host kind ${JSON.stringify((c as { kind?: unknown }).kind)}: libvirt, vcenter or sockets`,
      );
  }
}

export async function addHost(
  ctx: ControlContext,
  input: { name: string; connection: HostConnection; timeoutSeconds?: number },
): Promise<AddHostResult> {
  checkName('host', input.name);
  const t = input.timeoutSeconds;
  if (t !== undefined && (!Number.isInteger(t) || t < 5 || t > 600))
    throw new OperationError('--timeout: 5 s to 10 min (e.g. --timeout 1m)', 'invalid');
  const connection = checkConnection(input.connection);
  if (await ctx.vault.read(hostDoc(input.name)))
    throw new OperationError(
      `host ${input.name} already exists; remove it first (\`osr host remove ${input.name}\`) or choose another name`,
      'conflict',
    );
  const candidate: HostRecord = {
    ...connection,
    name: input.name,
    site: ctx.config.site,
    createdAt: new Date().toISOString(),
  };
  const result = await discoverOn(ctx, candidate, input.timeoutSeconds);
  if (!result.ok) throw discoveryRefusal(result, '. Nothing was registered.');
  const host = await storeHost(ctx, { name: input.name, site: ctx.config.site, connection });
  return { host, machines: result.machines.length };
}

export const removeHost = audited(
  'host.remove',
  async (ctx: ControlContext, name: string): Promise<HostRecord> => {
    const host = await getHost(ctx, name);
    const using = (await ctx.vault.machines()).filter((m) => m.host === name).map((m) => m.name);
    if (using.length)
      throw new OperationError(
        `host ${name} serves protected machine${using.length > 1 ? 's' : ''} ${using.join(', ')}: unprotect ${using.length > 1 ? 'them' : 'it'} first (\`osr unprotect <machine>\`)`,
        'conflict',
      );
    await ctx.vault.remove(hostDoc(name));
    return host;
  },
  (_ctx, name) => ({ target: name }),
);
