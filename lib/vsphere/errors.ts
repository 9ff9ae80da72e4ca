// What went wrong talking to a vCenter, by what the operator has to fix.
export type VsphereProblem =
  /** Nothing answers, or not HTTPS: the address or port is wrong, or a firewall is in the way. */
  | 'unreachable'
  /** The certificate is not trusted or does not match the pin. */
  | 'certificate'
  /** The user name or password is refused. */
  | 'credentials'
  /** Something answers, but not the vSphere API (wrong path, not a vCenter). */
  | 'not-vsphere'
  /** The API answered with a fault. */
  | 'fault';

export class VsphereError extends Error {
  override name = 'VsphereError';
  constructor(
    readonly problem: VsphereProblem,
    message: string,
    /** The certificate's SHA-256 fingerprint, when it was refused. */
    readonly fingerprint?: string,
  ) {
    super(message);
  }
}
