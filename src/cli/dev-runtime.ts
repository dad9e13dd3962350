import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import {
  defaultRuntimeDir,
  liveRuntimeState,
  readRuntimeState,
  runtimeDown,
  runtimeUp,
  serveRuntime,
  type RuntimeInfo,
} from '../devcluster/index.js';
import { shutdownSignal, type Io } from './util.js';

interface DirOptions {
  dir: string;
}

function dirOption(): Option {
  return new Option(
    '--dir <dir>',
    'directory of the runtime (containerd root and state, registries, logs)',
  )
    .default(defaultRuntimeDir(), '$XDG_STATE_HOME/virtual-kubelet/dev-runtime')
    .argParser((d) => resolve(d));
}

/** The command that re-runs this CLI (same node, same loader flags, same entry script). */
function selfCommand(args: string[]): [string, ...string[]] {
  return [process.execPath, ...process.execArgv, process.argv[1] ?? '', ...args];
}

/** The lines `up` and `status` print: where the runtime is and what it offers. */
export function describeRuntime(info: RuntimeInfo): string[] {
  return [
    `runtime endpoint: ${info.runtimeEndpoint}`,
    `registry: ${info.registry} (plain HTTP)`,
    `private registry: ${info.privateRegistry} (user ${info.credentials.username}, password ${info.credentials.password})`,
    ...Object.entries(info.images).map(([name, ref]) => `image ${name}: ${ref}`),
    `private image: ${info.privateImage}`,
  ];
}

export function devRuntimeCommand(io: Io): Command {
  const cmd = new Command('dev-runtime').description(
    'a real local container runtime for the cri provider (containerd, runc, registries, test images)',
  );

  cmd
    .command('up')
    .description('start containerd and the registries in the background, push the test images')
    .addOption(dirOption())
    .action(async (opts: DirOptions) => {
      const { state, started } = await runtimeUp({
        dir: opts.dir,
        serveCommand: selfCommand(['dev-runtime', 'serve', '--dir', opts.dir]),
      });
      io.err(
        started
          ? `runtime ready in ${opts.dir} (stop it with: virtual-kubelet dev-runtime down)`
          : `runtime already running in ${opts.dir} (pid ${String(state.pid)})`,
      );
      if (state.info) io.out(describeRuntime(state.info).join('\n'));
    });

  cmd
    .command('serve', { hidden: true })
    .description('run the runtime in the foreground (what up runs in the background)')
    .addOption(dirOption())
    .action(async (opts: DirOptions) => {
      await serveRuntime({ dir: opts.dir, log: io.err, signal: shutdownSignal(io) });
    });

  cmd
    .command('down')
    .description('stop the runtime started by up, removing every container it ran')
    .addOption(dirOption())
    .action(async (opts: DirOptions) => {
      const stopped = await runtimeDown(opts.dir);
      io.err(stopped ? `runtime in ${opts.dir} stopped` : `no runtime running in ${opts.dir}`);
    });

  cmd
    .command('status')
    .description(
      'say whether the runtime runs and print its endpoint and images; exit code 3 when not',
    )
    .addOption(dirOption())
    .action(async (opts: DirOptions) => {
      const state = await liveRuntimeState(opts.dir);
      if (!state) {
        const last = await readRuntimeState(opts.dir);
        io.out(
          `no runtime running in ${opts.dir}` +
            (last?.status === 'failed' ? ` (last start failed: ${last.error ?? '?'})` : ''),
        );
        io.exitCode = 3;
        return;
      }
      io.out(`runtime in ${opts.dir}: ${state.status} (pid ${String(state.pid)})`);
      if (state.info) io.out(describeRuntime(state.info).join('\n'));
    });

  return cmd;
}
