// A guest whose filesystems OSR froze for an app-consistent point and never thawed blocks every
// write of its applications. So a freeze is marked in a file of the connector's work folder
// before it is asked for, and unmarked only once thawed: when the process server dies (or the
// thaw fails) in between, the connector's next call thaws it first (thawIfMarked). The QEMU
// guest agent (lib/qemu/quiesce.ts) and libvirt's domfsfreeze (lib/libvirt/guest-freeze.ts) both
// go through here.
import fs from 'node:fs';
import path from 'node:path';

export interface GuestFreeze {
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** The error to throw when a thaw fails: the guest may still be frozen, and what to do. */
  thawFailed(err: Error): Error;
}

/**
 * Runs `fn` with the guest frozen, marked in `marker` meanwhile (undefined: no work folder, no
 * mark). A failed freeze is thawed (should it have gone through after all), unmarked and
 * rethrown; a failed thaw keeps the mark.
 */
export async function withMarkedFreeze<T>(
  marker: string | undefined,
  guest: GuestFreeze,
  fn: () => Promise<T>,
): Promise<T> {
  if (marker) {
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(marker, new Date().toISOString());
  }
  try {
    await guest.freeze();
  } catch (err) {
    await guest.thaw().catch(() => undefined);
    if (marker) fs.rmSync(marker, { force: true });
    throw err;
  }
  try {
    return await fn();
  } finally {
    await thaw(marker, guest);
  }
}

/** Thaws a guest an earlier freeze of OSR's may have left frozen; a no-op when none did. */
export async function thawIfMarked(marker: string, guest: Omit<GuestFreeze, 'freeze'>): Promise<void> {
  if (fs.existsSync(marker)) await thaw(marker, guest);
}

async function thaw(marker: string | undefined, guest: Omit<GuestFreeze, 'freeze'>): Promise<void> {
  try {
    await guest.thaw();
  } catch (err) {
    throw guest.thawFailed(err as Error);
  }
  if (marker) fs.rmSync(marker, { force: true });
}
