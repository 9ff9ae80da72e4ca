// Where each process keeps its files under the git-ignored state folder (.osr by default).
import path from 'node:path';
import type { OsrConfig } from './config';

export function statePaths(config: Pick<OsrConfig, 'stateDir'>) {
  const root = config.stateDir;
  return {
    root,
    bin: path.join(root, 'bin'),
    temporalBinary: path.join(root, 'bin', 'temporal'),
    temporalDb: path.join(root, 'temporal', 'temporal.db'),
    azurite: path.join(root, 'azurite'),
    logs: path.join(root, 'logs'),
    run: path.join(root, 'run'),
    keys: path.join(root, 'keys'),
    defaultKeyFile: path.join(root, 'keys', 'osr.key'),
    machines: path.join(root, 'machines'),
    spool: path.join(root, 'spool'),
  };
}
