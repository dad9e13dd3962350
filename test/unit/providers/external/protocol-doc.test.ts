import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { protocolDocFile, renderProtocolDoc } from '../../../../scripts/protocol-doc.js';

test('docs/provider-protocol.md is what npm run docs:protocol writes from the .proto', async () => {
  assert.equal(
    readFileSync(protocolDocFile, 'utf8'),
    await renderProtocolDoc(),
    'run npm run docs:protocol',
  );
});
