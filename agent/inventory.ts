// What the agent reports about its machine: identity, OS, kernel and block devices, read from
// /etc and /sys (no tools needed on the machine). `root` lets a test read a fake tree.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ownVersion } from './bundle';
import type { AgentDisk, MachineFacts } from './protocol';
import { diskInUse } from './tracking/mounts';

/** Devices that are not disks of the machine: loop, RAM disks, CD drives, device-mapper stacks. */
const NOT_DISKS = /^(loop|ram|zram|sr|fd|dm-|md|nbd)/;

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function blockDevices(root = '/'): AgentDisk[] {
  const sysBlock = path.join(root, 'sys/block');
  let names: string[];
  try {
    names = fs.readdirSync(sysBlock);
  } catch {
    return [];
  }
  const disks: AgentDisk[] = [];
  for (const name of names.sort()) {
    if (NOT_DISKS.test(name)) continue;
    const dir = path.join(sysBlock, name);
    // /sys/block/<dev>/size counts 512-byte sectors whatever the device's own sector size.
    const sectors = Number(readText(path.join(dir, 'size')) ?? 'NaN');
    if (!Number.isFinite(sectors) || sectors <= 0) continue;
    const disk: AgentDisk = {
      name,
      sizeBytes: sectors * 512,
      readOnly: readText(path.join(dir, 'ro')) === '1',
    };
    const serial = readText(path.join(dir, 'serial')) ?? readText(path.join(dir, 'device/serial'));
    const model = readText(path.join(dir, 'device/model'));
    if (serial) disk.serial = serial;
    if (model) disk.model = model;
    const use = root === '/' ? diskInUse(name) : undefined;
    if (use) disk.inUse = use;
    disks.push(disk);
  }
  return disks;
}

function osName(root: string): string {
  const text = readText(path.join(root, 'etc/os-release')) ?? '';
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1];
  return pretty || `${os.type()} (no /etc/os-release)`;
}

export function machineFacts(root = '/'): MachineFacts {
  const machineId = readText(path.join(root, 'etc/machine-id'));
  if (!machineId || !/^[0-9a-f]{32}$/i.test(machineId))
    throw new Error(
      `${path.join(root, 'etc/machine-id')} is missing or not 32 hex digits: the agent names its machine by it (make one with \`systemd-machine-id-setup\` or \`dbus-uuidgen > /etc/machine-id\`)`,
    );
  return {
    machineId: machineId.toLowerCase(),
    hostname: os.hostname(),
    os: osName(root),
    kernel: os.release(),
    agentVersion: ownVersion(),
    disks: blockDevices(root),
  };
}
