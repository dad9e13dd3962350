import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { defaultClusterDir, ensureBinaries, liveState, serve } from '../devcluster/index.js';
import { shutdownSignal, type Io } from './util.js';

/**
 * `npm start`: brings up the dev cluster in the foreground (or uses the one `dev-cluster up`
 * started) and says what to try. Ctrl-C stops what it started.
 */
export function startCommand(io: Io): Command {
  return new Command('start')
    .description('run the main job: a local dev cluster, in the foreground')
    .addOption(
      new Option('--dir <dir>', 'dev cluster directory')
        .default(defaultClusterDir(), '$XDG_STATE_HOME/virtual-kubelet/dev-cluster')
        .argParser((d) => resolve(d)),
    )
    .action(async (opts: { dir: string }) => {
      const running = await liveState(opts.dir);
      if (running?.status === 'ready') {
        io.err(
          `a dev cluster already runs in ${opts.dir} (stop it with: virtual-kubelet dev-cluster down)`,
        );
        io.out(`export KUBECONFIG=${running.kubeconfig ?? ''}`);
        return;
      }
      const signal = shutdownSignal(io);
      const binaries = await ensureBinaries({ progress: io.err, signal });
      io.err(`starting the dev cluster in ${opts.dir}`);
      let ready = false;
      const done = serve({ dir: opts.dir, binaries, log: io.err, signal });
      const hint = setInterval(() => {
        void liveState(opts.dir).then((s) => {
          if (ready || s?.status !== 'ready') return;
          ready = true;
          io.out(
            [
              '',
              'The dev cluster is up. In another terminal:',
              `  export KUBECONFIG=${s.kubeconfig ?? ''}`,
              '  kubectl get --raw /readyz',
              '  kubectl get pods -A',
              'Press Ctrl-C to stop it.',
            ].join('\n'),
          );
        });
      }, 250);
      try {
        await done;
      } finally {
        clearInterval(hint);
      }
    });
}
