// Runs every test file in one `node --test` run. When e2e tests are selected, one dev cluster is
// started first and shared by them (each test works in its own namespace); it is stopped, and its
// directory removed, when the run ends however it ends.
//
//   node --import tsx scripts/test.ts [--unit | --e2e] [--test-name-pattern=RE] [file...]
//
// --unit runs the unit, component and conformance tests (no control plane); --e2e only the e2e.
// --test-name-pattern is node --test's: only the tests whose names match RE run (as one test of
// an e2e file: `npm run test:e2e -- test/e2e/cri.test.ts --test-name-pattern='npm start'`).
//
// VK_SKIP_E2E=1 skips the e2e suite on a developer machine; under CI=true it is ignored.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  DevCluster,
  ensureBinaries,
  formatSeconds,
  isAlive,
  spawnOwned,
  type Binaries,
} from '../src/devcluster/index.js';

const root = new URL('..', import.meta.url).pathname;
const argv = process.argv.slice(2);
const only = argv.includes('--unit') ? 'unit' : argv.includes('--e2e') ? 'e2e' : undefined;
const explicit = argv.filter((a) => !a.startsWith('--'));
const namePatterns = argv.filter((a) => a.startsWith('--test-name-pattern='));
const say = (line: string): void => {
  process.stderr.write(`[test] ${line}\n`);
};

async function testFiles(dir: string): Promise<string[]> {
  const entries = await readdir(join(root, dir), { recursive: true, withFileTypes: true }).catch(
    () => [],
  );
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.test.ts'))
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

/** Removes e2e directories whose owning test run died without cleaning up (SIGKILL). */
async function sweepStale(): Promise<void> {
  const base = tmpdir();
  for (const name of await readdir(base).catch(() => [])) {
    if (!name.startsWith('vk-e2e-')) continue;
    const dir = join(base, name);
    const owner = Number.parseInt(
      await readFile(join(dir, 'owner.pid'), 'utf8').catch(() => ''),
      10,
    );
    if (!Number.isInteger(owner) || !isAlive(owner))
      await rm(dir, { recursive: true, force: true });
  }
}

const files =
  explicit.length > 0
    ? explicit
    : [
        ...(only === 'e2e' ? [] : await testFiles('test/unit')),
        ...(only === 'e2e' ? [] : await testFiles('test/component')),
        ...(only === 'e2e' ? [] : await testFiles('test/conformance')),
        ...(only === 'unit' ? [] : await testFiles('test/e2e')),
      ];
const wantsE2e = files.some((f) => f.includes('e2e'));
const skipE2e = process.env.VK_SKIP_E2E === '1' && process.env.CI !== 'true';
const env: NodeJS.ProcessEnv = { ...process.env };
let cluster: DevCluster | undefined;
let clusterDir: string | undefined;
let clusterFailed = false;

async function cleanup(): Promise<void> {
  await cluster?.stop();
  cluster = undefined;
  if (clusterDir) await rm(clusterDir, { recursive: true, force: true });
  clusterDir = undefined;
}

let testRun: ChildProcess | undefined;
let stopping = false;
function stop(reason: string): void {
  if (stopping) return;
  stopping = true;
  say(`${reason}: stopping`);
  if (testRun?.pid !== undefined) {
    try {
      process.kill(-testRun.pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  void cleanup().then(() => process.exit(130));
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
// npm or a shell that started this run may be killed outright; a run orphaned that way stops.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop('parent process gone');
}, 500).unref();

if (wantsE2e && skipE2e) {
  say('VK_SKIP_E2E=1: e2e tests skipped on this machine');
  files.splice(0, files.length, ...files.filter((f) => !f.includes('e2e')));
} else if (wantsE2e) {
  await sweepStale();
  try {
    const buildStart = Date.now();
    const binaries: Binaries = await ensureBinaries({ progress: say });
    say(`control-plane binaries ready in ${formatSeconds(Date.now() - buildStart)}`);
    clusterDir = await mkdtemp(join(tmpdir(), 'vk-e2e-'));
    await writeFile(join(clusterDir, 'owner.pid'), String(process.pid));
    cluster = new DevCluster({
      dir: clusterDir,
      binaries,
      metricsServer: true,
      log: say,
      onComponentExit: (c, code, sig) => {
        say(
          `${c} exited during the test run (${sig ?? String(code)}); log in ${clusterDir ?? '?'}`,
        );
      },
    });
    const info = await cluster.start();
    Object.assign(env, {
      VK_E2E_KUBECONFIG: info.adminKubeconfig,
      VK_E2E_SERVER: info.server,
      VK_E2E_PKI_DIR: info.pkiDir,
      VK_E2E_ETCD_URL: info.etcdUrl,
      VK_E2E_DIR: clusterDir,
      VK_E2E_KUBECTL: binaries.kubectl,
    });
  } catch (err) {
    clusterFailed = true;
    const reason = (err as Error).message;
    say(`the control plane could not start, so every e2e test fails: ${reason}`);
    env.VK_E2E_CLUSTER_ERROR = reason;
  }
}

const code = await new Promise<number>((resolve) => {
  // Tied to this process like the control plane; each test process in turn exits when it is
  // orphaned (test/helpers/orphan-watchdog.ts), so a killed run leaves nothing behind.
  testRun = spawnOwned(process.execPath, {
    args: [
      '--import',
      'tsx',
      '--import',
      './test/helpers/orphan-watchdog.ts',
      '--test',
      '--test-reporter=spec',
      // Three files at once: the e2e files that run containerd, build images or start a second
      // cluster starve the timing-bound waits of the others on a 2-core machine at four.
      `--test-concurrency=${process.env.VK_TEST_CONCURRENCY ?? '3'}`,
      ...namePatterns,
      ...files,
    ],
    cwd: root,
    env,
    logPath: 'inherit',
  });
  testRun.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
});
await cleanup();
process.exit(code !== 0 ? code : clusterFailed ? 1 : 0);
