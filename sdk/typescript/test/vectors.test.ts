// The shared vectors (schemas/vectors/, written by the Python codec): for every version of every record,
// the SDK decodes the bytes to the value and encodes the value to the same bytes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { avroType } from '../src/codec.js';
import { CONTRACT, SingleObjectCodec } from '../src/index.js';
import { type Vector, loadVectors } from './support.js';

const VECTORS = loadVectors();
const codec = new SingleObjectCodec();

function contractVersion(v: Vector) {
  const found = CONTRACT.find((c) => c.name === v.record && c.version === v.version);
  assert.ok(found, `${v.record} v${v.version} is not in src/contract.generated.ts: run \`npm run generate\``);
  return found;
}

/** The value in the Avro JSON encoding: every union wrapped, bytes as code points 0-255. */
function avroJson(type: ReturnType<typeof avroType>, value: unknown): unknown {
  return JSON.parse(type.toString(value));
}

test('there are vectors for every version of every record, both cases', () => {
  const found = new Set(VECTORS.map((v) => `${v.record}/v${v.version}/${v.case}`));
  const expected = new Set(CONTRACT.flatMap((c) => ['full', 'minimal'].map((k) => `${c.name}/v${c.version}/${k}`)));
  assert.deepEqual(found, expected);
});

test('a full turn vector carries every content kind', () => {
  const turn = VECTORS.find((v) => v.record === 'turn' && v.case === 'full');
  assert.ok(turn);
  const kinds = new Set(
    (turn.value as { messages: { content: object }[] }).messages.map((m) => Object.keys(m.content)[0]?.split('.').pop()),
  );
  assert.deepEqual(kinds, new Set(['TextContent', 'ToolCall', 'ToolResponse', 'Widget', 'StructuredContent', 'RedactedContent']));
});

for (const v of VECTORS) {
  describe(`${v.record}/v${v.version}/${v.case}`, () => {
    const bytes = Buffer.from(v.single_object_hex, 'hex');

    test('the header is C3 01 and the fingerprint of the generated table', () => {
      const c = contractVersion(v);
      assert.equal(bytes.subarray(0, 2).toString('hex'), 'c301');
      assert.equal(bytes.subarray(2, 10).toString('hex'), v.fingerprint_hex);
      assert.equal(c.fingerprintHex, v.fingerprint_hex);
    });

    test('decodes the bytes to the value', () => {
      const type = avroType(contractVersion(v).schema, 'always');
      assert.deepEqual(avroJson(type, type.fromBuffer(bytes.subarray(10))), v.value);
    });

    test('encodes the value to the bytes', () => {
      const c = contractVersion(v);
      const type = avroType(c.schema, 'always');
      const body = type.toBuffer(type.fromString(JSON.stringify(v.value)));
      const header = Buffer.concat([Buffer.from([0xc3, 0x01]), Buffer.from(c.fingerprintHex, 'hex')]);
      assert.equal(Buffer.concat([header, body]).toString('hex'), v.single_object_hex);
    });

    test("the SDK's codec reads it, and writes what it read to the same bytes (newest version)", () => {
      const decoded = codec.decode(bytes);
      assert.equal(decoded.name, v.record);
      assert.equal(decoded.writerVersion, v.version);
      if (codec.latestVersion(v.record).version === v.version) {
        assert.equal(codec.encode(v.record, decoded.record).toString('hex'), v.single_object_hex);
      }
    });
  });
}
