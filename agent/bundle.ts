// The agent's file set as one versioned bundle: its version is the package version plus a hash of
// its compiled files (so any change of code is a new version), and it packs into one buffer with
// a SHA-256 that the machine checks before the bundle replaces what runs. Pure Node: the process
// server packs, the agent unpacks, both with this file.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** The package version (package.json); the bundle hash tells builds of it apart. */
export const PACKAGE_VERSION = '0.1.0';

/** The .js files of a compiled agent folder, relative, sorted (the same order everywhere). */
export function bundleFiles(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.js'))
    .map((f) => f.split(path.sep).join('/'))
    .sort();
}

/** `<package version>+<12 hex>`: the hash covers every file's name and bytes. */
export function bundleVersion(dir: string): string {
  const hash = createHash('sha256');
  for (const f of bundleFiles(dir)) {
    const bytes = fs.readFileSync(path.join(dir, f));
    hash.update(`${f}\0${bytes.length}\0`).update(bytes);
  }
  return `${PACKAGE_VERSION}+${hash.digest('hex').slice(0, 12)}`;
}

let own: string | undefined;
/** The version of the agent running this code (its own folder), computed once. */
export function ownVersion(): string {
  own ??= bundleVersion(__dirname);
  return own;
}

export interface PackedBundle {
  version: string;
  bytes: Buffer;
  sha256: string;
}

/** The folder as one buffer: JSON {version, files: {path: base64}}. */
export function packBundle(dir: string): PackedBundle {
  const files: Record<string, string> = {};
  for (const f of bundleFiles(dir)) files[f] = fs.readFileSync(path.join(dir, f)).toString('base64');
  const version = bundleVersion(dir);
  const bytes = Buffer.from(JSON.stringify({ version, files }));
  return { version, bytes, sha256: sha256(bytes) };
}

export const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/**
 * Writes a packed bundle's files into `into` (made anew) after checking its SHA-256, and returns
 * its version as computed from the written files (never as the bundle claims it).
 */
export function unpackBundle(bytes: Buffer, expectedSha256: string, into: string): string {
  const seen = sha256(bytes);
  if (seen !== expectedSha256)
    throw new Error(
      `the bundle's SHA-256 is ${seen}, not the expected ${expectedSha256}: refused, nothing replaced (the process server's copy of the agent differs from this release: reinstall OSR there and upgrade again)`,
    );
  const { files } = JSON.parse(bytes.toString('utf8')) as { files: Record<string, string> };
  if (typeof files?.['main.js'] !== 'string')
    throw new Error('the bundle has no main.js: refused, nothing replaced');
  const root = `${path.resolve(into)}${path.sep}`;
  for (const name of Object.keys(files))
    if (!path.resolve(into, name).startsWith(root) || !name.endsWith('.js'))
      throw new Error(`the bundle names a file outside the agent's folder (${name}): refused`);
  fs.rmSync(into, { recursive: true, force: true });
  for (const [name, data] of Object.entries(files)) {
    const file = path.resolve(into, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(data, 'base64'), { mode: 0o644 });
  }
  return bundleVersion(into);
}
