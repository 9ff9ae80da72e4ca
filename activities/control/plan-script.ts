// Script actions of recovery plans: a command run by the control worker with the plan, group,
// machines, job and chosen points in its environment. Killed (its whole process group) at the
// timeout; a non-zero exit or a timeout fails the action with the tail of its output.
import { spawn } from 'node:child_process';
import { Context } from '@temporalio/activity';
import { withHeartbeat } from '../common/with-heartbeat';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../../shared/failures';

export interface PlanScriptInput {
  plan: string;
  group: string;
  job: string;
  actionId: string;
  command: string;
  timeoutSeconds: number;
  machines: string[];
  /** machine → point id (empty for cleanup). */
  points: Record<string, string>;
}

export interface PlanScriptResult {
  exitCode: number;
  durationMs: number;
  output: string;
}

const TAIL = 4000;

export async function runPlanScript(input: PlanScriptInput): Promise<PlanScriptResult> {
  const started = Date.now();
  const env = {
    ...process.env,
    OSR_PLAN: input.plan,
    OSR_GROUP: input.group,
    OSR_MACHINES: input.machines.join(','),
    OSR_JOB: input.job,
    OSR_ACTION: input.actionId,
    OSR_POINTS: Object.entries(input.points)
      .map(([m, p]) => `${m}=${p}`)
      .join(','),
  };
  // detached: its own process group, so a timeout kills the children of the shell too.
  const child = spawn('/bin/sh', ['-c', input.command], { env, detached: true });
  let output = '';
  const keep = (b: Buffer) => (output = (output + b.toString('utf8')).slice(-TAIL));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let timedOut = false;
  const kill = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, input.timeoutSeconds * 1000);
  Context.current().cancellationSignal.addEventListener('abort', kill);
  const exitCode = await withHeartbeat(
    () =>
      new Promise<number>((resolve) => {
        child.on('error', () => resolve(127));
        child.on('close', (code) => resolve(code ?? -1));
      }),
  ).finally(() => clearTimeout(timer));
  const durationMs = Date.now() - started;
  if (timedOut)
    throw ApplicationFailure.nonRetryable(
      `script ${input.actionId} timed out after ${input.timeoutSeconds} s: ${output.slice(-500)}`,
      FAILURE.PlanScriptFailed,
    );
  if (exitCode !== 0)
    throw ApplicationFailure.nonRetryable(
      `script ${input.actionId} exited ${exitCode}: ${output.slice(-500)}`,
      FAILURE.PlanScriptFailed,
    );
  return { exitCode, durationMs, output };
}
