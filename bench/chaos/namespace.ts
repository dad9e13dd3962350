// A namespace ready for pods: created, and its `default` ServiceAccount present (the
// ServiceAccount admission refuses pods until the controller manager has made it).
import { setTimeout as delay } from 'node:timers/promises';
import type { KubeClient } from '../../src/kube/client.js';

export async function createNamespace(
  client: KubeClient,
  name: string,
  signal: AbortSignal,
  timeoutMs = 60_000,
): Promise<void> {
  await client.request('POST', '/api/v1/namespaces', {
    body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
  });
  const deadline = performance.now() + timeoutMs;
  while (!(await client.get(`/api/v1/namespaces/${name}/serviceaccounts/default`))) {
    if (performance.now() > deadline)
      throw new Error(
        `namespace ${name} has no default ServiceAccount after ${String(timeoutMs / 1000)} s`,
      );
    await delay(250, undefined, { signal });
  }
}
