import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DevCluster, type Binaries } from '../../../src/devcluster/index.js';

const binaries = {} as Binaries;

test('components cannot be stopped or started before the cluster has started', async () => {
  const cluster = new DevCluster({ dir: '/nonexistent', binaries });
  await assert.rejects(cluster.stopComponent('kube-apiserver'), { code: 'NotRunning' });
  await assert.rejects(cluster.startComponent('etcd'), { code: 'NotRunning' });
  assert.equal(cluster.isStopped('kube-apiserver'), false);
  assert.equal(cluster.pid('etcd'), 0);
});
