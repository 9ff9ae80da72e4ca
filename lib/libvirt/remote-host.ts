// A libvirt host reached over SSH (qemu+ssh://, qemu+libssh://, qemu+libssh2://): what OSR reads
// of its URI to reach the host with the OpenSSH client too (lib/ssh/openssh.ts) for what virsh
// cannot do, namely the backup's export folder and its NBD socket, which live on that host. The
// user, port, keyfile and known_hosts are the URI's own, so virsh and OSR log in alike. Host keys
// are always checked: a URI that turns checking off is refused, with the fix.
import { OpenSshError, sshRun, type OpenSshTarget } from '../ssh/openssh';

const SSH_TRANSPORTS = new Set(['ssh', 'libssh', 'libssh2']);

export interface RemoteLibvirt extends OpenSshTarget {
  transport: 'ssh' | 'libssh' | 'libssh2';
}

function parse(uri: string): URL | undefined {
  try {
    return new URL(uri);
  } catch {
    return undefined;
  }
}

/** The SSH side of a libvirt URI, or undefined for a URI of this machine (qemu:///…, qemu+unix:///…). */
export function remoteLibvirt(uri: string): RemoteLibvirt | undefined {
  const url = parse(uri);
  const transport = /^[a-z0-9]+\+([a-z0-9]+):$/.exec(url?.protocol ?? '')?.[1];
  if (!url || !transport || !SSH_TRANSPORTS.has(transport)) return undefined;
  const q = url.searchParams;
  return {
    transport: transport as RemoteLibvirt['transport'],
    host: url.hostname.replace(/^\[|\]$/g, ''),
    ...(url.port ? { port: Number(url.port) } : {}),
    ...(url.username ? { user: decodeURIComponent(url.username) } : {}),
    ...(q.get('keyfile') ? { keyFile: q.get('keyfile')! } : {}),
    ...(q.get('known_hosts') ? { knownHosts: q.get('known_hosts')! } : {}),
  };
}

/**
 * Why OSR cannot use this libvirt URI, with the fix; undefined when it can. Local URIs and SSH
 * ones pass; a remote URI of another transport (TLS, TCP) does not, since OSR reaches the backup's
 * NBD export through SSH.
 */
export function libvirtUriProblem(uri: string): string | undefined {
  const url = parse(uri);
  if (!url || !/^[a-z][a-z0-9+]*:$/.test(url.protocol))
    return `${JSON.stringify(uri)} is not a libvirt URI: e.g. qemu:///system or qemu+ssh://root@kvm1/system`;
  const remote = remoteLibvirt(uri);
  if (!remote) {
    if (url.hostname)
      return `${uri} reaches libvirt over ${url.protocol.replace(/:$/, '').split('+')[1] ?? 'tls'}, but OSR reads a remote host's backup export through SSH: use qemu+ssh://<user>@${url.host}${url.pathname} (or qemu+libssh://…)`;
    return undefined;
  }
  const q = url.searchParams;
  if (!remote.host) return `${uri} names no host: qemu+ssh://<user>@<host>[:port]/system`;
  if (q.get('no_verify') === '1' || /^(ignore|auto)$/.test(q.get('known_hosts_verify') ?? ''))
    return `${uri} turns host-key checking off (no_verify=1, known_hosts_verify=ignore or auto accept any machine answering at that address): remove it, and put the host's key in known_hosts (see docs/operations.md, "Remote libvirt hosts")`;
  for (const [param, value] of [
    ['keyfile', remote.keyFile],
    ['known_hosts', remote.knownHosts],
  ] as const)
    if (value !== undefined && (!value.startsWith('/') || /\s/.test(value)))
      return `${param}=${value} must be an absolute path without spaces on the host's process server`;
  if (remote.transport === 'ssh' && remote.knownHosts)
    return `libvirt's ssh transport (the OpenSSH client) ignores known_hosts=: use qemu+libssh://${url.host}${url.pathname}${url.search} (libvirt's libssh transport reads it), or drop it and put the host's key in the process server's ~/.ssh/known_hosts`;
  return undefined;
}

/** Where the host key is looked up, for messages. */
function knownHostsOf(r: RemoteLibvirt): string {
  return r.knownHosts ?? "the process server's ~/.ssh/known_hosts (or /etc/ssh/ssh_known_hosts)";
}

/** An SSH failure said with what to do about it. */
export function sshFailureMessage(r: RemoteLibvirt, err: OpenSshError): string {
  const where = `${r.user ? `${r.user}@` : ''}${r.host}${r.port ? `:${r.port}` : ''}`;
  const keyscan = `ssh-keyscan ${r.port ? `-p ${r.port} ` : ''}${r.host}`;
  switch (err.reason) {
    case 'host-key-unknown':
      return `the SSH host key of ${where} is not in ${knownHostsOf(r)} (${err.detail}): compare \`${keyscan} | ssh-keygen -lf -\` with \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` run on the host, then append the matching line to ${r.knownHosts ?? '~/.ssh/known_hosts'} and add the host again`;
    case 'host-key-changed':
      return `${where} showed another SSH host key than ${knownHostsOf(r)} holds: refusing to log in (another machine answers there, or its key was changed: check it on the host, then replace its line with \`ssh-keygen -R\`)`;
    case 'auth':
      return `${where} refused the login (${err.detail}): put the public key of ${r.keyFile ?? "the process server's ~/.ssh/id_* key"} in ~${r.user ?? ''}/.ssh/authorized_keys on the host, or give the right key with keyfile=`;
    case 'unreachable':
      return `no SSH server answers at ${where} (${err.detail}): check the host name and port, and that sshd runs there`;
    default:
      return `ssh to ${where} failed: ${err.detail}`;
  }
}

/** Logs in with OSR's own ssh as virsh does: refuses (with the fix) what would fail later. */
export async function checkSshLogin(r: RemoteLibvirt): Promise<void> {
  await sshRun(r, 'true', 30_000).catch((err: unknown) => {
    throw err instanceof OpenSshError ? new Error(sshFailureMessage(r, err)) : err;
  });
}
