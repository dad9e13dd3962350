import { Command, CommanderError } from 'commander';
import { DevClusterError, KUBERNETES_VERSION } from '../devcluster/index.js';
import { isVirtualKubeletError } from '../errors.js';
import { devClusterCommand } from './dev-cluster.js';
import { devRuntimeCommand } from './dev-runtime.js';
import { withoutKlogFlags } from './go-flags.js';
import { runCommand } from './run.js';
import { startCommand } from './start.js';
import type { Io } from './util.js';
import { VERSION } from './version.js';

/** The `virtual-kubelet` command line. Resolves to the process exit code; never throws. */
export async function main(given: readonly string[], io?: Partial<Io>): Promise<number> {
  const ctx: Io = {
    out: io?.out ?? ((l) => process.stdout.write(`${l}\n`)),
    err: io?.err ?? ((l) => process.stderr.write(l ? `${l}\n` : '')),
    exitCode: 0,
  };
  const program = new Command('virtual-kubelet').description(
    'A Kubernetes node backed by a pluggable provider.',
  );
  program
    .command('version')
    .description('print the version')
    .action(() => {
      ctx.out(`virtual-kubelet ${VERSION} (Kubernetes ${KUBERNETES_VERSION} dev cluster)`);
    });
  program.addCommand(runCommand(ctx), { isDefault: true });
  program.addCommand(startCommand(ctx));
  program.addCommand(devClusterCommand(ctx));
  program.addCommand(devRuntimeCommand(ctx));
  // Settings are not inherited by commands built apart and added later, so apply them to all.
  const configure = (cmd: Command): void => {
    cmd
      .exitOverride()
      .showSuggestionAfterError()
      .configureOutput({
        writeOut: (text) => process.stdout.write(text),
        writeErr: (text) => {
          ctx.err(text.trimEnd());
        },
        outputError: (text) => {
          ctx.err(`virtual-kubelet: ${text.replace(/^error: /, '').trimEnd()}`);
        },
      });
    cmd.commands.forEach(configure);
  };
  configure(program);
  const { argv, note } = withoutKlogFlags(given);
  if (note) ctx.err(`virtual-kubelet: ${note}`);
  // `run` is the default command, so a mistyped command would reach it as a stray argument.
  const first = argv[0];
  const known = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);
  if (first !== undefined && !first.startsWith('-') && !known.includes(first)) {
    ctx.err(`virtual-kubelet: unknown command '${first}' (commands: ${known.join(', ')})`);
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof DevClusterError || isVirtualKubeletError(err)) {
      ctx.err(`virtual-kubelet: ${err.message}`);
      return 1;
    }
    ctx.err(`virtual-kubelet: ${(err as Error).message}`);
    if (process.env.VK_DEBUG) ctx.err(String((err as Error).stack));
    return 1;
  }
}
