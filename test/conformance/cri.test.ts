import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { DevRuntime, type RuntimeInfo } from '../../src/devcluster/index.js';
import { CriProvider } from '../../src/providers/cri/index.js';
import { providerContractSuite } from '../../src/testing/index.js';
import { randomPodCidr } from '../helpers/process-pods.js';

// A real containerd (the dev runtime) for the whole file; each test gets its own node name,
// pod CIDR and state directory on it.
let dir = '';
let runtime: DevRuntime | undefined;
let info: RuntimeInfo | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vk-conformance-cri-'));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  runtime = new DevRuntime({ dir: join(dir, 'rt') });
  info = await runtime.start();
});

after(async () => {
  await runtime?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const silent = {
  level: 'silent',
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  fatal: () => undefined,
  child() {
    return this;
  },
};

let n = 0;
providerContractSuite(
  'cri provider',
  () => {
    if (!info) throw new Error('the dev runtime did not start');
    const nodeName = `conformance-cri-${String(++n)}`;
    const provider = new CriProvider({
      nodeName,
      nodeIP: '127.0.0.1',
      config: {
        runtimeEndpoint: info.runtimeEndpoint,
        podCIDR: randomPodCidr(),
        stateDir: join(dir, 'state', nodeName),
        syncIntervalMs: 200,
      },
      logger: silent,
    });
    return Promise.resolve({
      provider,
      close: async () => {
        // Pods the suite left (it deletes most) go with the runtime; the guard goes now.
        for (const pod of await provider.getPods())
          await provider.deletePod(pod, AbortSignal.timeout(30_000)).catch(() => undefined);
        await provider.close();
        spawnSync('nft', ['delete', 'table', 'inet', `vk_cri_${nodeName.replace(/-/g, '_')}`]);
      },
    });
  },
  // The suite's pods run the busybox test image of the local registry; `info` is set by then.
  {
    get image(): string {
      return info?.images.busybox ?? 'busybox:1.36';
    },
  },
);
