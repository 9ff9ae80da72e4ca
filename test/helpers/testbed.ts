// The setup replication tests share: a private stack with the control, cloud-applier and
// process-server workers, a control-plane context, and a "manual" policy under which points are
// cut only on request (each test decides when).
import { ControlContext } from '../../operations/context';
import { createPolicy } from '../../operations/policies';
import { startTestStack, type TestStack } from './test-stack';

export interface Testbed {
  stack: TestStack;
  ctx: ControlContext;
  stop(): Promise<void>;
}

export async function startTestbed(
  options: { processServerEnv?: (stack: TestStack) => Promise<NodeJS.ProcessEnv> | NodeJS.ProcessEnv } = {},
): Promise<Testbed> {
  const stack = await startTestStack();
  const psEnv = (await options.processServerEnv?.(stack)) ?? {};
  await Promise.all([
    stack.startWorker('control'),
    stack.startWorker('cloud-applier'),
    stack.startWorker('process-server', psEnv),
  ]);
  const ctx = new ControlContext(stack.config);
  await createPolicy(ctx, {
    name: 'manual',
    crashPointSeconds: 3600,
    appPointSeconds: 0,
    rpoThresholdSeconds: 7200,
  });
  return {
    stack,
    ctx,
    async stop() {
      await ctx.close();
      await stack.stop();
    },
  };
}
