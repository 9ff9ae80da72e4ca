// The control worker's workflow code, bundled once by `npm run build` rather than by webpack at
// every start (seconds on two cores, on the path of every restart and failover of the worker).
// A bundle is used only when it was made from the code on disk now: its key hashes every
// compiled file workflow code may import (workflows/ and shared/, the lint allowlist) and the
// versions of the packages it uses. Otherwise the worker bundles at start, as before.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode, type WorkerOptions } from '@temporalio/worker';

/** The compiled project (dist/); tests give a copy. */
const builtRoot = path.resolve(__dirname, '..');
/** Raised when the bundling itself changes (its options, how the bundle is loaded). */
const BUNDLE_FORMAT = 1;
const packagesUsed = ['@temporalio/workflow', '@temporalio/common', '@temporalio/worker', 'zod'];

const workflowsPathIn = (root: string) => path.join(root, 'workflows');
const bundleFileIn = (root: string) => path.join(root, 'workflow-bundle', 'bundle.js');
const keyFileIn = (root: string) => path.join(root, 'workflow-bundle', 'key');

function jsFilesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** The hash of what a bundle of `root`'s workflow code is made from. */
export function workflowCodeKey(root = builtRoot): string {
  const hash = createHash('sha256').update(`format ${BUNDLE_FORMAT}\n`);
  for (const name of packagesUsed) {
    const manifest = require.resolve(`${name}/package.json`);
    hash.update(
      `${name}@${(JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version: string }).version}\n`,
    );
  }
  for (const file of [...jsFilesUnder(workflowsPathIn(root)), ...jsFilesUnder(path.join(root, 'shared'))]) {
    hash.update(`${path.relative(root, file)}\n`).update(fs.readFileSync(file));
  }
  return hash.digest('hex');
}

const quiet = { trace() {}, debug() {}, info() {}, log() {}, warn: console.warn, error: console.error };

/** Bundles the workflow code into workflow-bundle/ with its key (the build's last step). */
export async function writeWorkflowBundle(root = builtRoot): Promise<string> {
  const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPathIn(root), logger: quiet });
  fs.mkdirSync(path.dirname(bundleFileIn(root)), { recursive: true });
  fs.writeFileSync(bundleFileIn(root), code);
  fs.writeFileSync(keyFileIn(root), workflowCodeKey(root));
  return bundleFileIn(root);
}

/** Worker options that load the built bundle when it matches the code, else bundle at start. */
export function workflowCodeOptions(root = builtRoot): {
  options: Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'>;
  prebuilt: boolean;
} {
  let built: string | undefined;
  try {
    built = fs.readFileSync(keyFileIn(root), 'utf8');
  } catch {
    // no bundle built (compiled without `npm run build`)
  }
  return built === workflowCodeKey(root)
    ? { options: { workflowBundle: { codePath: bundleFileIn(root) } }, prebuilt: true }
    : { options: { workflowsPath: workflowsPathIn(root) }, prebuilt: false };
}
