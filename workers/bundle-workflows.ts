// `npm run build`'s last step: the control worker's workflow bundle (see workflow-bundle.ts).
import { writeWorkflowBundle } from './workflow-bundle';

writeWorkflowBundle().then(
  (file) => process.stdout.write(`build: workflow bundle ${file}\n`),
  (err: unknown) => {
    process.stderr.write(`build: bundling the workflow code failed: ${String(err)}\n`);
    process.exit(1);
  },
);
