import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { JAEGER_VERSION } from '../../../src/devcluster/jaeger.js';

test('the Jaeger go.mod pins github.com/jaegertracing/jaeger to JAEGER_VERSION', async () => {
  const gomod = await readFile(
    new URL('../../../src/devcluster/modules/jaeger/go.mod', import.meta.url),
    'utf8',
  );
  assert.match(
    gomod,
    new RegExp(
      `^\\tgithub\\.com/jaegertracing/jaeger ${JAEGER_VERSION.replace(/\./g, '\\.')}\\b`,
      'm',
    ),
  );
  assert.match(gomod, /^tool github\.com\/jaegertracing\/jaeger\/cmd\/jaeger$/m);
});
