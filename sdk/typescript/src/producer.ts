// The emitter talks to Kafka through this small interface; KafkaProducer is its kafkajs implementation.
// (Another client, such as @confluentinc/kafka-javascript, would be a second implementation.)
import kafkajs from 'kafkajs';
import type { EmitterConfig } from './config.js';

const { Kafka, Partitioners, CompressionTypes, logLevel } = kafkajs;

export interface OutgoingRecord {
  readonly topic: string;
  readonly key: Buffer;
  readonly value: Buffer;
}

export interface EventProducer {
  connect(): Promise<void>;
  /** Send the records in order; resolves once every one is acknowledged by all in-sync replicas. */
  send(records: readonly OutgoingRecord[]): Promise<void>;
  disconnect(): Promise<void>;
}

/**
 * kafkajs 2.2.4: an idempotent producer (the broker drops a retried batch it already has, so retries
 * never duplicate or reorder), acks=-1 (all in-sync replicas), and the Java-compatible murmur2
 * partitioner, so a key lands on the partition the Java client and aiokafka would choose.
 */
export class KafkaProducer implements EventProducer {
  private readonly producer: kafkajs.Producer;

  constructor(
    private readonly config: EmitterConfig,
    clientId = 'trajstream-sdk',
  ) {
    const kafka = new Kafka({
      clientId,
      brokers: config.brokers,
      ssl: config.ssl(),
      sasl: config.sasl(),
      requestTimeout: config.producerRequestTimeoutMs,
      logLevel: logLevel.WARN,
    });
    this.producer = kafka.producer({
      idempotent: true,
      // kafkajs guards an idempotent producer's sequence numbers with one request at a time per
      // connection; the emitter never has more than one send in flight either.
      maxInFlightRequests: 1,
      // Named explicitly: also silences kafkajs 2's warning about the default partitioner having changed.
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
  }

  async connect(): Promise<void> {
    await this.producer.connect();
  }

  async send(records: readonly OutgoingRecord[]): Promise<void> {
    // Grouped by topic in first-seen order; within a topic the records keep their order.
    const byTopic = new Map<string, { key: Buffer; value: Buffer }[]>();
    for (const r of records) {
      let messages = byTopic.get(r.topic);
      if (messages === undefined) byTopic.set(r.topic, (messages = []));
      messages.push({ key: r.key, value: r.value });
    }
    await this.producer.sendBatch({
      acks: -1,
      timeout: this.config.producerRequestTimeoutMs,
      compression: this.config.producerCompression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
  }

  async disconnect(): Promise<void> {
    await this.producer.disconnect();
  }
}
