import type { ChaosContext, ScenarioResult } from './types.js';

export function run(ctx: ChaosContext): Promise<ScenarioResult> {
  ctx.log('todo');
  return Promise.resolve({ ok: false, reason: 'todo' });
}
