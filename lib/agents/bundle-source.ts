// The agent bundle this release ships (install and upgrade): the compiled agent folder beside
// this file, or the one agents.bundleDir names. Its version is what `outdated` compares with.
import fs from 'node:fs';
import path from 'node:path';
import { bundleVersion } from '../../agent/bundle';

export function agentBundleDir(configured?: string): string {
  return configured ?? path.join(__dirname, '..', '..', 'agent');
}

/** The shipped version, or undefined when the folder has no compiled agent. */
export function shippedAgentVersion(configured?: string): string | undefined {
  const dir = agentBundleDir(configured);
  return fs.existsSync(path.join(dir, 'main.js')) ? bundleVersion(dir) : undefined;
}
