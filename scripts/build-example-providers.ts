/**
 * Builds the example providers of `examples/providers/` into the cache (see
 * test/helpers/example-providers.ts) and prints where each is. `.ci/run` runs it before the tests.
 */
import { buildGoMock, protocolDescriptorSet } from '../test/helpers/example-providers.js';

const started = Date.now();
const goMock = await buildGoMock();
console.log(`go-mock: ${goMock} (${String(Math.round((Date.now() - started) / 1000))} s)`);
console.log(`provider.proto as a descriptor set (python-mock): ${protocolDescriptorSet()}`);
