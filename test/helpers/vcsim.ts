// vcsim (govmomi's vCenter simulator, built by scripts/setup.sh into .osr/bin) on a free loopback
// port: the vSphere SOAP API over HTTPS with a self-signed certificate, its default inventory
// shaped by flags (-host, -vm …). Tests read its certificate's fingerprint themselves.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { spawnManaged, stopPid, waitForLogLine } from '../../lib/process/managed-process';
import { freePort } from '../../lib/process/ports';
import { SoapSession, moRef, readMoRef } from '../../lib/vsphere/soap';
import { projectRoot } from './test-stack';

export const vcsimBinary = process.env.OSR_VCSIM_BINARY ?? path.join(projectRoot, '.osr', 'bin', 'vcsim');

export interface Vcsim {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startVcsim(logDir: string, flags: string[] = []): Promise<Vcsim> {
  if (!fs.existsSync(vcsimBinary))
    throw new Error(
      `no vcsim at ${vcsimBinary}: run OSR_SETUP_TESTS=1 npm run setup (it builds vcsim from its Go module)`,
    );
  const port = await freePort();
  const logFile = path.join(logDir, `vcsim-${port}.log`);
  const proc = spawnManaged({
    name: 'vcsim',
    command: vcsimBinary,
    args: [`-httptest.serve=127.0.0.1:${port}`, ...flags],
    logFile,
  });
  await waitForLogLine(logFile, 'GOVC_URL', proc.exited, 30_000);
  return { url: `https://127.0.0.1:${port}/sdk`, port, stop: () => stopPid(proc.pid).then(() => undefined) };
}

/** The SHA-256 fingerprint of the certificate a TLS server presents, read by the test itself. */
export function certificateFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

/** Powers a VM of vcsim's first datacenter off through the vim25 API (PowerOffVM_Task). */
export async function powerOff(url: string, thumbprint: string, vm: string): Promise<void> {
  const soap = new SoapSession({ url, thumbprint });
  try {
    await soap.call(
      'Login',
      `${moRef('_this', { type: 'SessionManager', value: 'SessionManager' })}<userName>a</userName><password>b</password>`,
    );
    const ref = readMoRef(
      await soap.call(
        'FindByInventoryPath',
        `${moRef('_this', { type: 'SearchIndex', value: 'SearchIndex' })}<inventoryPath>DC0/vm/${vm}</inventoryPath>`,
      ),
    );
    assert.ok(ref, `vcsim has ${vm}`);
    await soap.call('PowerOffVM_Task', moRef('_this', ref));
  } finally {
    soap.close();
  }
}
