import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { errorCode } from '../../../../src/errors.js';
import { PodAddressPool, parsePodCIDR } from '../../../../src/providers/mock/addresses.js';
import { parseMockConfig, readMockState } from '../../../../src/providers/mock/index.js';
import { mock, pod, signal } from './helpers.js';

function stateFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vk-mock-addr-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return join(dir, 'state.jsonl');
}

test('the pool gives each UID one address, the same again, and reuses freed ones last', () => {
  const pool = new PodAddressPool('10.9.0.0/29');
  // 10.9.0.0 (network), .1 (gateway) and .7 (broadcast) are never a pod's.
  const a = pool.take('a');
  assert.equal(a, '10.9.0.2');
  assert.equal(pool.take('a'), a);
  const taken = ['b', 'c', 'd', 'e'].map((uid) => pool.take(uid));
  assert.deepEqual(taken, ['10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
  assert.throws(
    () => pool.take('f'),
    (err: unknown) => errorCode(err) === 'Unavailable',
  );
  assert.equal(pool.release('c'), true);
  assert.equal(pool.release('c'), false);
  assert.equal(pool.take('f'), '10.9.0.4');
  assert.equal(pool.get('f'), '10.9.0.4');
  assert.equal(pool.size, 5);
  // A restart gives an address back to its UID; one outside the range or taken is ignored.
  const next = new PodAddressPool('10.9.0.0/29');
  next.restore('x', '10.9.0.5');
  next.restore('y', '10.9.0.5');
  next.restore('z', '192.168.0.5');
  assert.equal(next.get('x'), '10.9.0.5');
  assert.equal(next.size, 1);
});

test('podCIDR must be an IPv4 CIDR with a prefix from 8 to 30', () => {
  assert.deepEqual(parsePodCIDR('10.244.1.7/16'), {
    first: (10 * 256 + 244) * 65_536 + 2,
    last: (10 * 256 + 244) * 65_536 + 65_534,
  });
  for (const bad of ['10.244.0.0', '10.244.0.0/31', '10.244.0.0/7', 'fd00::/64', '300.1.1.1/16']) {
    assert.equal(typeof parsePodCIDR(bad), 'string', bad);
    assert.throws(() => parseMockConfig({ podCIDR: bad }), /^.*podCIDR must be an IPv4 CIDR/);
  }
  assert.throws(() => parseMockConfig({ podCIDR: 16 }), /podCIDR must be a string/);
  assert.equal(parseMockConfig({ podCIDR: '172.20.0.0/24' }).podCIDR, '172.20.0.0/24');
});

test('preparePod: one address per UID from podCIDR, the one the status reports; podIP for all', async (t) => {
  const { provider } = mock({ config: { podCIDR: '172.20.0.0/24', hostIP: '192.168.1.2' } });
  t.after(() => provider.close());
  const a = await provider.preparePod(pod('a'), signal);
  assert.deepEqual(a, { podIPs: ['172.20.0.2'], hostIP: '192.168.1.2' });
  assert.deepEqual(await provider.preparePod(pod('a'), signal), a);
  await provider.createPod(pod('a'), signal);
  const status = await provider.getPodStatus('ns', 'a', signal);
  assert.equal(status?.podIP, '172.20.0.2');
  assert.deepEqual(status?.podIPs, [{ ip: '172.20.0.2' }]);
  // A pod created without preparePod gets an address too.
  await provider.createPod(pod('b'), signal);
  assert.equal((await provider.getPodStatus('ns', 'b', signal))?.podIP, '172.20.0.3');
  assert.equal(provider.addressesInUse, 2);

  // A pod on the host's network has the host's address.
  const host = pod('h', { hostNetwork: true });
  assert.deepEqual((await provider.preparePod(host, signal)).podIPs, ['192.168.1.2']);
  assert.equal(provider.addressesInUse, 2);

  const fixed = mock({ config: { podIP: '10.1.2.3' } }).provider;
  t.after(() => fixed.close());
  assert.deepEqual((await fixed.preparePod(pod('a'), signal)).podIPs, ['10.1.2.3']);
  assert.equal(fixed.addressesInUse, 0);
});

test('deletePod frees the address, of a created pod and of one only prepared', async (t) => {
  const { provider } = mock();
  t.after(() => provider.close());
  await provider.preparePod(pod('a'), signal);
  await provider.createPod(pod('a'), signal);
  await provider.preparePod(pod('b'), signal);
  assert.equal(provider.addressesInUse, 2);
  await provider.deletePod(pod('a'), signal);
  await provider.deletePod(pod('b'), signal);
  assert.equal(provider.addressesInUse, 0);
  // Nothing left: a second delete says NotFound.
  await assert.rejects(provider.deletePod(pod('b'), signal), (err: unknown) => {
    return errorCode(err) === 'NotFound';
  });
});

test('addresses survive in the state file: prepared and created pods keep theirs', async (t) => {
  const file = stateFile(t);
  const first = mock({ config: { stateFile: file } }).provider;
  const a = await first.preparePod(pod('a'), signal);
  await first.createPod(pod('a'), signal);
  const b = await first.preparePod(pod('b'), signal);
  await first.preparePod(pod('c'), signal);
  await first.deletePod(pod('c'), signal);
  // No close(): as after a kill -9.

  const second = mock({ config: { stateFile: file } }).provider;
  t.after(() => second.close());
  assert.deepEqual(await second.preparePod(pod('a'), signal), a);
  assert.deepEqual(await second.preparePod(pod('b'), signal), b);
  assert.equal(second.addressesInUse, 2);
  // c's address was freed; a and b keep theirs.
  const d = await second.preparePod(pod('d'), signal);
  assert.ok(![a, b].some((x) => x.podIPs[0] === d.podIPs[0]));
  await second.createPod(pod('b'), signal);
  assert.equal((await second.getPodStatus('ns', 'b', signal))?.podIP, b.podIPs[0]);
  assert.deepEqual([...readMockState(file).addresses.keys()].sort(), ['uid-a', 'uid-b', 'uid-d']);
});
