import { expandEnvValue } from '../kubelet/env-expansion.js';
import { MAX_OUTPUT_BYTES, deadline, failure, success, type ProbeResult } from './common.js';
import type { ExecOptions, ExecResult } from './runtime.js';

/** Runs a command in the probed container: {@link ProbeRuntime.exec} bound to one container. */
export type ContainerExec = (
  command: readonly string[],
  options: ExecOptions,
) => Promise<ExecResult>;

/**
 * One exec probe attempt: exit code 0 is a success, any other a failure with the output as the
 * message, and no answer within `timeoutMs` a failure `command "…" timed out` (the kubelet's
 * behaviour since ExecProbeTimeout went GA).
 */
export async function execCheck(
  exec: ContainerExec,
  command: readonly string[],
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const limit = deadline(signal, timeoutMs);
  try {
    const running = exec(command, { timeoutMs, signal: limit.signal });
    // The command may still settle after the deadline; its late rejection is of no interest.
    running.catch(() => undefined);
    const expired = new Promise<undefined>((resolve) => {
      if (limit.signal.aborted) resolve(undefined);
      else limit.signal.addEventListener('abort', () => resolve(undefined), { once: true });
    });
    let result: ExecResult | undefined;
    try {
      result = await Promise.race([running, expired]);
    } catch (err) {
      // An exec that rejects because it was told to stop has timed out (or was cancelled).
      if (!limit.signal.aborted) throw err;
    }
    if (!result) {
      return failure(
        limit.timedOut()
          ? `command ${JSON.stringify(command.join(' '))} timed out`
          : 'probe cancelled',
      );
    }
    const output = truncate(result.output ?? '');
    return result.exitCode === 0 ? success(output) : failure(output);
  } finally {
    limit.dispose();
  }
}

function truncate(text: string): string {
  const bytes = Buffer.from(text);
  return bytes.length <= MAX_OUTPUT_BYTES
    ? text
    : bytes.subarray(0, MAX_OUTPUT_BYTES).toString('utf8');
}

/**
 * `command` with `$(VAR)` references replaced by the values of the container's `env`, as the
 * kubelet expands exec probe commands (ExpandContainerCommandOnlyStatic): only entries with a
 * plain `value` count; `$$` escapes a `$`; an unknown or unclosed reference stays as written.
 */
export function expandCommand(
  command: readonly string[],
  env: readonly { name: string; value?: string; valueFrom?: unknown }[] | undefined,
): string[] {
  const values = new Map<string, string>();
  for (const e of env ?? []) if (e.valueFrom === undefined) values.set(e.name, e.value ?? '');
  return command.map((arg) => expandEnvValue(arg, (name) => values.get(name)));
}
