// Settings from the TRAJSTREAM_* variables, read like the Python SDK's EmitterConfig.from_env.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigurationError, EmitterConfig } from '../src/index.js';
import { variableName } from '../src/config.js';

test('defaults: the local broker and the trajstream. prefix', () => {
  const config = EmitterConfig.fromEnv({});
  assert.equal(config.bootstrap, '127.0.0.1:9092');
  assert.equal(config.topic('events'), 'trajstream.events');
  assert.equal(config.sdkMaxBufferedEvents, 10_000);
  assert.equal(config.maxEventBytes, 1024 * 1024);
});

test('variables are read case-insensitively and parsed by type', () => {
  const config = EmitterConfig.fromEnv({
    TRAJSTREAM_KAFKA_BOOTSTRAP: 'a:1, b:2',
    trajstream_topic_prefix: 'x.',
    TRAJSTREAM_SDK_MAX_BUFFERED_EVENTS: '7',
    TRAJSTREAM_PRODUCER_COMPRESSION: 'gzip',
  });
  assert.deepEqual(config.brokers, ['a:1', 'b:2']);
  assert.equal(config.topic('feedback'), 'x.feedback');
  assert.equal(config.sdkMaxBufferedEvents, 7);
  assert.equal(config.producerCompression, 'gzip');
});

test('without TRAJSTREAM_KAFKA_BOOTSTRAP the broker host and port are used', () => {
  assert.equal(EmitterConfig.fromEnv({ TRAJSTREAM_BROKER_PORT: '39092' }).bootstrap, '127.0.0.1:39092');
});

test('field names map to the Python variable names', () => {
  assert.equal(variableName('kafkaBootstrap'), 'TRAJSTREAM_KAFKA_BOOTSTRAP');
  assert.equal(variableName('sdkMaxBufferedEvents'), 'TRAJSTREAM_SDK_MAX_BUFFERED_EVENTS');
  assert.equal(variableName('assemblyMaxBytes'), 'TRAJSTREAM_ASSEMBLY_MAX_BYTES');
});

test('bad values are refused with the variable named', () => {
  assert.throws(() => EmitterConfig.fromEnv({ TRAJSTREAM_BROKER_PORT: 'ninety' }), /TRAJSTREAM_BROKER_PORT="ninety" is not a whole number/);
  assert.throws(() => EmitterConfig.fromEnv({ TRAJSTREAM_SECURITY_PROTOCOL: 'TLS' }), ConfigurationError);
  assert.throws(() => EmitterConfig.fromEnv({ TRAJSTREAM_PRODUCER_COMPRESSION: 'zstd' }), /none or gzip/);
  assert.throws(() => EmitterConfig.fromEnv({ TRAJSTREAM_MAX_EVENT_BYTES: '100' }), /at least 1024/);
  assert.throws(() => EmitterConfig.fromEnv({ TRAJSTREAM_SCHEMA_REGISTRY_URL: 'http://r' }), /single-object encoding only/);
});

test('SASL and SSL options for kafkajs', () => {
  const config = new EmitterConfig({ securityProtocol: 'SASL_SSL', saslMechanism: 'SCRAM-SHA-512', saslUsername: 'u', saslPassword: 'p' });
  assert.deepEqual(config.sasl(), { mechanism: 'scram-sha-512', username: 'u', password: 'p' });
  assert.equal(config.ssl(), true);
  assert.equal(new EmitterConfig().sasl(), undefined);
  assert.equal(new EmitterConfig().ssl(), false);
});
