// Avro single-object encoding: C3 01, the writer schema's CRC-64-AVRO fingerprint (8 bytes, little-endian),
// then the Avro body. The same bytes the Python codec (trajstream_sdk/codec.py) writes and reads.
//
// Writes with the newest version of each record; reads any version it knows the fingerprint of, resolved
// onto the newest (as the Python codec does). The fingerprints come from the generated contract table.
import avro from 'avsc';
import { CONTRACT, type ContractVersion } from './contract.generated.js';
import {
  EncodeError,
  EventTooLargeError,
  MalformedEventError,
  UnexpectedEventTypeError,
  UnknownSchemaError,
} from './errors.js';
import { Limits } from './limits.js';

export const SINGLE_OBJECT_MARKER = Buffer.from([0xc3, 0x01]);
const HEADER_LEN = 10; // marker (2) + fingerprint (8)

/**
 * How unions are held in JS. 'auto' (avsc's default, the SDK's records) leaves `null | T` unions
 * unwrapped and wraps only unions avsc cannot tell apart by value, such as a message's content (six
 * record kinds): `{"dev.trajstream.events.TextContent": {text}}`, the branch named as Python's tuple
 * notation names it. 'always' wraps every union as the Avro JSON encoding does (the shared vectors).
 */
export type UnionWrapping = 'auto' | 'always';

export function avroType(schema: unknown, wrapUnions: UnionWrapping = 'auto'): avro.Type {
  // A registry per type: each version declares the same named types, which must not collide.
  return avro.Type.forSchema(schema as avro.Schema, { wrapUnions, registry: {} });
}

export interface DecodedEvent {
  /** The record (turn, trajectory_start, ...). */
  readonly name: string;
  /** The schema version that wrote it. */
  readonly writerVersion: number;
  /** Its fields, resolved onto the newest version. */
  readonly record: Record<string, unknown>;
}

interface Plan {
  readonly writer: ContractVersion;
  readonly read: (body: Buffer) => unknown;
}

export class SingleObjectCodec {
  private readonly latest = new Map<string, { version: ContractVersion; type: avro.Type; header: Buffer }>();
  private readonly byFingerprint = new Map<string, ContractVersion>();
  private readonly plans = new Map<string, Plan>();

  constructor(
    readonly limits: Limits = new Limits(),
    private readonly contract: readonly ContractVersion[] = CONTRACT,
  ) {
    for (const v of contract) {
      // In record-then-version order, so the newest version of each record wins (also when two versions
      // share a canonical form, as the Python catalog does).
      this.byFingerprint.set(v.fingerprintHex, v);
      this.latest.set(v.name, { version: v, type: avroType(v.schema), header: header(v.fingerprintHex) });
    }
  }

  get names(): string[] {
    return [...this.latest.keys()].sort();
  }

  /** The newest version of `name` (the one `encode` writes). */
  latestVersion(name: string): ContractVersion {
    return this.entry(name).version;
  }

  /** Encode `record` as the newest version of `name`; raises EncodeError (naming the fields) if it does not fit. */
  encode(name: string, record: Record<string, unknown>): Buffer {
    const { version, type, header } = this.entry(name);
    let body: Buffer;
    try {
      body = type.toBuffer(record);
    } catch (err) {
      throw new EncodeError(`${name} record does not fit schema v${version.version}: ${explain(type, record, err)}`, {
        cause: err,
      });
    }
    const data = Buffer.concat([header, body]);
    const [maxBytes, knob] = this.limits.encodedBytes(name);
    if (data.length > maxBytes) {
      throw new EventTooLargeError(`${name} event is ${data.length} bytes, over the limit of ${maxBytes} (${knob})`);
    }
    return data;
  }

  decode(data: Uint8Array, expect?: string): DecodedEvent {
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length < HEADER_LEN) {
      throw new MalformedEventError(`event is ${bytes.length} bytes; a single-object encoded event has a 10-byte header`);
    }
    if (!bytes.subarray(0, 2).equals(SINGLE_OBJECT_MARKER)) {
      throw new MalformedEventError(
        `bad marker ${bytes.subarray(0, 2).toString('hex')}: not Avro single-object encoding (expected c301)`,
      );
    }
    const plan = this.plan(bytes.subarray(2, HEADER_LEN).toString('hex'));
    const { name, version } = plan.writer;
    if (expect !== undefined && name !== expect) {
      throw new UnexpectedEventTypeError(`expected a ${expect} event, got ${name} (v${version})`);
    }
    let record: unknown;
    try {
      record = plan.read(bytes.subarray(HEADER_LEN));
    } catch (err) {
      throw new MalformedEventError(`corrupt ${name} v${version} body (${bytes.length} bytes): ${String(err)}`, {
        cause: err,
      });
    }
    return { name, writerVersion: version, record: record as Record<string, unknown> };
  }

  private entry(name: string) {
    const entry = this.latest.get(name);
    if (entry === undefined) throw new EncodeError(`unknown record schema '${name}'; known: ${this.names.join(', ')}`);
    return entry;
  }

  private plan(fingerprintHex: string): Plan {
    let plan = this.plans.get(fingerprintHex);
    if (plan !== undefined) return plan;
    const writer = this.byFingerprint.get(fingerprintHex);
    if (writer === undefined) {
      throw new UnknownSchemaError(`unknown writer schema fingerprint ${fingerprintHex}: not in the SDK's contract`);
    }
    const reader = this.entry(writer.name);
    if (reader.version === writer) {
      plan = { writer, read: (body) => reader.type.fromBuffer(body) };
    } else {
      const resolver = reader.type.createResolver(avroType(writer.schema));
      plan = { writer, read: (body) => reader.type.fromBuffer(body, resolver) };
    }
    this.plans.set(fingerprintHex, plan);
    return plan;
  }
}

function header(fingerprintHex: string): Buffer {
  const fingerprint = Buffer.from(fingerprintHex, 'hex');
  if (fingerprint.length !== 8) throw new Error(`fingerprint ${fingerprintHex} is not 8 bytes`);
  return Buffer.concat([SINGLE_OBJECT_MARKER, fingerprint]);
}

/** avsc's writer errors rarely name the field; its validator does (only run on failure). */
function explain(type: avro.Type, record: unknown, err: unknown): string {
  const problems: string[] = [];
  type.isValid(record, {
    errorHook: (path: string[], value: unknown, expected: avro.Type) => {
      const where = path.length > 0 ? path.join('.') : '(record)';
      problems.push(`${where}: ${describe(value)} is not ${expected.branchName ?? expected.typeName}`);
    },
  });
  return problems.length > 0 ? problems.join('; ') : String(err);
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
