// Runs one CLI action with a control-plane context, mapping refusals to exit codes.
import { loadConfig } from '../../lib/config/config';
import { ControlContext, OperationError } from '../../operations/context';
import { CliError, EXIT } from './output';

export const exitCodes: Record<OperationError['code'], number> = {
  'not-found': EXIT.notFound,
  conflict: EXIT.conflict,
  invalid: EXIT.usage,
  unavailable: EXIT.unavailable,
};

export async function withContext<T>(action: (ctx: ControlContext) => Promise<T>): Promise<T> {
  const ctx = new ControlContext(loadConfig());
  try {
    return await action(ctx);
  } catch (err) {
    if (err instanceof OperationError) throw new CliError(err.message, exitCodes[err.code]);
    throw err;
  } finally {
    await ctx.close();
  }
}
