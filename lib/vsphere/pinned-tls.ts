// TLS for a vCenter: trusted by the system's CAs, or by one certificate the operator pinned by its
// SHA-256 fingerprint (self-signed vCenters). There is no switch that trusts any certificate: the
// connection is opened without Node's own rejection only so that the certificate can be shown in
// the error (its fingerprint, to pin) and compared with the pin, and it is handed to HTTP only
// after that check passed. Nothing is sent before.
import https from 'node:https';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { VsphereError } from './errors';

/** AA:BB:… (upper case, colons), the form `openssl x509 -fingerprint -sha256` and Node print. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.replace(/^sha256[:=]/i, '').replace(/[:\s]/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return undefined;
  return hex.toUpperCase().match(/../g)!.join(':');
}

/**
 * An https.Agent whose connections are checked before use: a certificate the system trusts for
 * this host name, or exactly the pinned one (any chain, any name: the pin is the trust).
 */
export function pinnedAgent(options: { thumbprint?: string; timeoutMs: number }): https.Agent {
  const pin = options.thumbprint;
  class PinnedAgent extends https.Agent {
    override createConnection(
      connectOptions: tls.ConnectionOptions,
      callback?: (err: Error | null, socket: Duplex) => void,
    ): Duplex | undefined {
      const socket = tls.connect({ ...connectOptions, rejectUnauthorized: false });
      const timer = setTimeout(
        () => socket.destroy(new Error(`no TLS handshake within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
      socket.once('error', (err) => {
        clearTimeout(timer);
        callback?.(err, socket);
      });
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        const cert = socket.getPeerCertificate();
        const fingerprint = cert.fingerprint256;
        const where = `${connectOptions.host ?? 'the vCenter'}:${connectOptions.port ?? 443}`;
        let problem: VsphereError | undefined;
        if (pin !== undefined) {
          if (fingerprint !== pin)
            problem = new VsphereError(
              'certificate',
              `the certificate of ${where} does not match the pinned thumbprint (it is ${fingerprint}, pinned ${pin}): if the vCenter's certificate was renewed, check the new fingerprint and add the host again with --thumbprint ${fingerprint}; otherwise something else answers at this address`,
            );
        } else if (!socket.authorized)
          problem = new VsphereError(
            'certificate',
            `the certificate of ${where} is not trusted (${String(socket.authorizationError)}); its SHA-256 fingerprint is ${fingerprint}. If that is your vCenter's certificate (compare it on the vCenter), pin it with --thumbprint ${fingerprint}`,
            fingerprint,
          );
        if (problem) {
          socket.destroy();
          callback?.(problem, socket);
          return;
        }
        callback?.(null, socket);
      });
      return undefined;
    }
  }
  return new PinnedAgent({ keepAlive: false });
}
