import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { parseMockConfig } from '../../../../src/providers/mock/index.js';
import { mock, pod, signal } from './helpers.js';

describe('mock hangRate fault', () => {
  test('is parsed and checked like errorRate', () => {
    assert.deepEqual(parseMockConfig({ faults: { createPod: { hangRate: 0.01 } } }), {
      faults: { createPod: { hangRate: 0.01 } },
    });
    assert.throws(() => parseMockConfig({ faults: { createPod: { hangRate: 1.5 } } }), {
      message: 'faults.createPod.hangRate must be a number between 0 and 1',
    });
  });

  test('a hung call answers only when its signal aborts, with the abort reason', async () => {
    const { provider } = mock({
      config: { faults: { createPod: { hangRate: 0.5 } } },
      random: () => 0.1,
    });
    const controller = new AbortController();
    let settled = false;
    const call = provider.createPod(pod('hung'), controller.signal).finally(() => {
      settled = true;
    });
    await delay(50);
    assert.equal(settled, false, 'the call is still waiting');
    assert.equal(await provider.getPod('ns', 'hung', signal), undefined, 'nothing runs yet');
    controller.abort(new Error('deadline'));
    await assert.rejects(call, /deadline/);
    await provider.close();
  });

  test('a hung call ends when the provider closes; a roll above the rate does not hang', async () => {
    let roll = 0.1;
    const { provider } = mock({
      config: { faults: { getPods: { hangRate: 0.5 } } },
      random: () => roll,
    });
    const hung = provider.getPods(signal);
    roll = 0.9;
    assert.deepEqual(await provider.getPods(signal), []);
    await provider.close();
    await assert.rejects(hung, { code: 'Unavailable' });
  });
});
