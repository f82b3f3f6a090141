// The generated contract table is up to date with schemas/, and its fingerprints are CRC-64-AVRO of the
// schemas' Parsing Canonical Form (computed here only as a check: the SDK ships fastavro's numbers).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { avroType } from '../src/codec.js';
import { CONTRACT } from '../src/index.js';
import { PACKAGE_ROOT } from './support.js';

interface Generator {
  collect(): unknown[];
  render(versions: unknown[]): string;
}

test('src/contract.generated.ts is what the generator writes from schemas/ now', async () => {
  const generator = (await import(pathToFileURL(join(PACKAGE_ROOT, 'scripts', 'generate-contract.mjs')).href)) as Generator;
  const current = readFileSync(join(PACKAGE_ROOT, 'src', 'contract.generated.ts'), 'utf8');
  assert.ok(current === generator.render(generator.collect()), 'src/contract.generated.ts is stale: run `npm run generate`');
});

const EMPTY = 0xc15d213aa4d7a795n;
const TABLE = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  return fp;
});

/** CRC-64-AVRO (the Rabin fingerprint of the Avro spec), as single-object encoding writes it: little-endian. */
export function crc64Avro(data: Buffer): Buffer {
  let fp = EMPTY;
  for (const byte of data) fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(byte)) & 0xffn)]!;
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp & 0xffffffffffffffffn);
  return out;
}

test('CRC-64-AVRO of the empty input is the spec value', () => {
  assert.equal(crc64Avro(Buffer.alloc(0)).readBigUInt64LE(), EMPTY);
});

for (const v of CONTRACT) {
  test(`${v.name} v${v.version}: the shipped fingerprint is CRC-64-AVRO of the canonical form`, () => {
    // avsc's schema() is the Parsing Canonical Form (full names, no docs or defaults, fixed key order).
    const canonical = JSON.stringify(avroType(v.schema).schema());
    assert.equal(crc64Avro(Buffer.from(canonical, 'utf8')).toString('hex'), v.fingerprintHex);
  });
}
