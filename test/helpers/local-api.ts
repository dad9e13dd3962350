import { KubeConfig } from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { TestContext } from 'node:test';
import { KubeClient } from '../../src/kube/client.js';

/**
 * A plain-HTTP stand-in for the API server, answering with `handler`, and a client of it.
 * Both are closed when the test ends. For unit tests of code that talks to the API.
 */
export async function localApi(
  t: TestContext,
  handler: RequestListener,
): Promise<{ server: Server; client: KubeClient }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: `http://127.0.0.1:${String(address.port)}`, skipTLSVerify: true },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const client = await KubeClient.create(kc);
  t.after(() => {
    client.close();
    server.close();
  });
  return { server, client };
}
