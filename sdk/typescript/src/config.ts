// What an emitter needs to know, read from the same TRAJSTREAM_* variables as the Python SDK's
// EmitterConfig.from_env (trajstream_sdk/config.py), with the same defaults.
import { readFileSync } from 'node:fs';
import { ConfigurationError } from './errors.js';
import { DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_TRAJECTORY_BYTES, Limits } from './limits.js';

export type SecurityProtocol = 'PLAINTEXT' | 'SSL' | 'SASL_PLAINTEXT' | 'SASL_SSL';
const SECURITY_PROTOCOLS: readonly SecurityProtocol[] = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'];

type Credentials = { username: string; password: string };
/** kafkajs's SASL options (a union by mechanism). */
export type SaslOptions =
  | ({ mechanism: 'plain' } & Credentials)
  | ({ mechanism: 'scram-sha-256' } & Credentials)
  | ({ mechanism: 'scram-sha-512' } & Credentials);

export interface EmitterConfigFields {
  /** TRAJSTREAM_KAFKA_BOOTSTRAP: host:port[,host:port...]; when unset, brokerHost:brokerPort (the local broker). */
  kafkaBootstrap: string | null;
  brokerHost: string;
  brokerPort: number;
  securityProtocol: SecurityProtocol;
  /** PLAIN (the default under SASL), SCRAM-SHA-256 or SCRAM-SHA-512. */
  saslMechanism: string | null;
  saslUsername: string | null;
  saslPassword: string | null;
  sslCafile: string | null;
  sslCertfile: string | null;
  sslKeyfile: string | null;
  topicPrefix: string;
  /** How long the sender waits to gather a batch before each produce request. */
  producerLingerMs: number;
  /** The most bytes of events one produce request carries (one event is always sent, whatever its size). */
  producerMaxBatchBytes: number;
  producerCompression: 'none' | 'gzip';
  producerRequestTimeoutMs: number;
  /** Events accepted and not yet acknowledged, at most: past that, emitting waits (back-pressure). */
  sdkMaxBufferedEvents: number;
  maxEventBytes: number;
  assemblyMaxBytes: number;
  /** Unsupported here: the TypeScript SDK writes single-object encoding only (see the README). */
  schemaRegistryUrl: string | null;
}

const DEFAULTS: EmitterConfigFields = {
  kafkaBootstrap: null,
  brokerHost: '127.0.0.1',
  brokerPort: 9092,
  securityProtocol: 'PLAINTEXT',
  saslMechanism: null,
  saslUsername: null,
  saslPassword: null,
  sslCafile: null,
  sslCertfile: null,
  sslKeyfile: null,
  topicPrefix: 'trajstream.',
  producerLingerMs: 5,
  producerMaxBatchBytes: 512 * 1024,
  producerCompression: 'none',
  producerRequestTimeoutMs: 30_000,
  sdkMaxBufferedEvents: 10_000,
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  assemblyMaxBytes: DEFAULT_MAX_TRAJECTORY_BYTES,
  schemaRegistryUrl: null,
};

/** TRAJSTREAM_KAFKA_BOOTSTRAP for kafkaBootstrap, and so on. */
export function variableName(field: keyof EmitterConfigFields): string {
  return `TRAJSTREAM_${field.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export class EmitterConfig implements Readonly<EmitterConfigFields> {
  readonly kafkaBootstrap!: string | null;
  readonly brokerHost!: string;
  readonly brokerPort!: number;
  readonly securityProtocol!: SecurityProtocol;
  readonly saslMechanism!: string | null;
  readonly saslUsername!: string | null;
  readonly saslPassword!: string | null;
  readonly sslCafile!: string | null;
  readonly sslCertfile!: string | null;
  readonly sslKeyfile!: string | null;
  readonly topicPrefix!: string;
  readonly producerLingerMs!: number;
  readonly producerMaxBatchBytes!: number;
  readonly producerCompression!: 'none' | 'gzip';
  readonly producerRequestTimeoutMs!: number;
  readonly sdkMaxBufferedEvents!: number;
  readonly maxEventBytes!: number;
  readonly assemblyMaxBytes!: number;
  readonly schemaRegistryUrl!: string | null;

  constructor(fields: Partial<EmitterConfigFields> = {}) {
    Object.assign(this, DEFAULTS, fields);
    if (!SECURITY_PROTOCOLS.includes(this.securityProtocol)) {
      throw new ConfigurationError(
        `TRAJSTREAM_SECURITY_PROTOCOL=${JSON.stringify(this.securityProtocol)}: use one of ${SECURITY_PROTOCOLS.join(', ')}`,
      );
    }
    if (this.producerCompression !== 'none' && this.producerCompression !== 'gzip') {
      throw new ConfigurationError('TRAJSTREAM_PRODUCER_COMPRESSION must be none or gzip');
    }
    if (this.schemaRegistryUrl) {
      // The platform then reads the Confluent wire format only: single-object events would be dead-lettered.
      throw new ConfigurationError(
        'TRAJSTREAM_SCHEMA_REGISTRY_URL is set, but the TypeScript SDK writes Avro single-object encoding only',
      );
    }
    if (!(this.sdkMaxBufferedEvents >= 1)) {
      throw new ConfigurationError(`TRAJSTREAM_SDK_MAX_BUFFERED_EVENTS=${this.sdkMaxBufferedEvents}: at least 1`);
    }
    void this.limits; // knobs that do not fit together are refused here
  }

  /** Read TRAJSTREAM_* variables (case-insensitive, as the platform does); unset ones keep their default. */
  static fromEnv(env: Readonly<Record<string, string | undefined>> = process.env): EmitterConfig {
    const upper = new Map(Object.entries(env).map(([k, v]) => [k.toUpperCase(), v]));
    const fields: Partial<Record<keyof EmitterConfigFields, unknown>> = {};
    for (const field of Object.keys(DEFAULTS) as (keyof EmitterConfigFields)[]) {
      const name = variableName(field);
      const raw = upper.get(name);
      if (raw === undefined) continue;
      if (typeof DEFAULTS[field] === 'number') {
        if (!/^\s*[+-]?\d+\s*$/.test(raw)) throw new ConfigurationError(`${name}=${JSON.stringify(raw)} is not a whole number`);
        fields[field] = Number.parseInt(raw, 10);
      } else {
        fields[field] = raw;
      }
    }
    return new EmitterConfig(fields as Partial<EmitterConfigFields>);
  }

  get bootstrap(): string {
    return this.kafkaBootstrap || `${this.brokerHost}:${this.brokerPort}`;
  }

  get brokers(): string[] {
    return this.bootstrap
      .split(',')
      .map((b) => b.trim())
      .filter((b) => b.length > 0);
  }

  get limits(): Limits {
    return new Limits(this.maxEventBytes, this.assemblyMaxBytes);
  }

  topic(name: string): string {
    return `${this.topicPrefix}${name}`;
  }

  /** kafkajs's `ssl` option, or false. */
  ssl(): false | { ca?: string; cert?: string; key?: string } | true {
    if (this.securityProtocol !== 'SSL' && this.securityProtocol !== 'SASL_SSL') return false;
    if (!this.sslCafile && !this.sslCertfile && !this.sslKeyfile) return true;
    const read = (path: string | null) => (path ? readFileSync(path, 'utf8') : undefined);
    return { ca: read(this.sslCafile), cert: read(this.sslCertfile), key: read(this.sslKeyfile) };
  }

  /** kafkajs's `sasl` option, or undefined. */
  sasl(): SaslOptions | undefined {
    if (!this.securityProtocol.startsWith('SASL')) return undefined;
    const mechanism = (this.saslMechanism || 'PLAIN').toLowerCase();
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      throw new ConfigurationError(
        `TRAJSTREAM_SASL_MECHANISM=${JSON.stringify(this.saslMechanism)}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`,
      );
    }
    const credentials = { username: this.saslUsername ?? '', password: this.saslPassword ?? '' };
    return { mechanism, ...credentials } as SaslOptions;
  }
}
