import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../../src/log.js';
import { ServiceFeed } from '../../../src/pods/service-feed.js';
import type { V1Service } from '../../../src/wire.js';
import { waitFor } from '../../helpers/wait.js';

const svc = (ns: string, name: string, rv: string): V1Service => ({
  metadata: { namespace: ns, name, uid: `${ns}/${name}`, resourceVersion: rv },
});

/** A feed over an in-memory Service index and pod set, recording the provider's calls. */
function fixture(): {
  feed: ServiceFeed;
  calls: [string, string[]][];
  services: Map<string, V1Service[]>;
  pods: Set<string>;
  change: (ns: string) => void;
} {
  const calls: [string, string[]][] = [];
  const services = new Map<string, V1Service[]>();
  const pods = new Set<string>();
  const listeners = new Set<(ns: string) => void>();
  const feed = new ServiceFeed({
    provider: {
      setServices: (ns, list) => {
        calls.push([
          ns,
          list.map((s) => `${s.metadata?.name ?? ''}@${s.metadata?.resourceVersion ?? ''}`),
        ]);
        return Promise.resolve();
      },
    },
    list: (ns) => services.get(ns) ?? [],
    onChange: (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    hasPods: (ns) => pods.has(ns),
    logger: silentLogger,
  });
  return { feed, calls, services, pods, change: (ns) => listeners.forEach((fn) => fn(ns)) };
}

test('setServices gets the Services of namespaces with pods, each change once, and [] when the last pod goes', async () => {
  const f = fixture();
  const stop = new AbortController();
  const running = f.feed.run(stop.signal);
  try {
    f.services.set('a', [svc('a', 'web', '1')]);
    f.services.set('b', [svc('b', 'db', '1')]);
    f.change('a');
    f.change('b');
    // No pod of the node in either namespace yet: nothing is handed over.
    f.pods.add('a');
    f.feed.touch('a');
    await waitFor(() => f.calls.length === 1);
    assert.deepEqual(f.calls[0], ['a', ['web@1']]);
    // The same list again (a second pod) is not handed over twice.
    f.feed.touch('a');
    f.services.set('a', [svc('a', 'web', '2'), svc('a', 'api', '1')]);
    f.change('a');
    await waitFor(() => f.calls.length === 2);
    assert.deepEqual(f.calls[1], ['a', ['web@2', 'api@1']]);
    // A change in a namespace without pods of the node is not handed over.
    f.services.set('b', [svc('b', 'db', '2')]);
    f.change('b');
    f.pods.delete('a');
    f.feed.touch('a');
    await waitFor(() => f.calls.length === 3);
    assert.deepEqual(f.calls[2], ['a', []]);
    f.feed.touch('a');
    f.feed.touch('b');
    f.pods.add('b');
    f.feed.touch('b');
    await waitFor(() => f.calls.length === 4);
    assert.deepEqual(f.calls[3], ['b', ['db@2']]);
  } finally {
    stop.abort();
    await running;
  }
});
