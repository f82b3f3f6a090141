// The emitter: encodes events and publishes them, in order, through one idempotent producer.
import { SingleObjectCodec } from './codec.js';
import { EmitterConfig } from './config.js';
import { DeliveryError } from './errors.js';
import { type AvroRecord, type FeedbackOptions, type Redactor, feedbackRecord } from './events.js';
import { EVENTS_TOPIC, FEEDBACK, FEEDBACK_TOPIC } from './names.js';
import { type EventProducer, KafkaProducer, type OutgoingRecord } from './producer.js';
import { Slots } from './slots.js';
import { Trajectory, type TrajectoryOptions } from './trajectory.js';

export interface EmitterOptions {
  /** Default: EmitterConfig.fromEnv() (the TRAJSTREAM_* variables). */
  config?: EmitterConfig;
  /** Applied to every free-text field before encoding (where the Python SDK applies its redactor). */
  redactor?: Redactor;
  clientId?: string;
  /** Default: a KafkaProducer (kafkajs) for `config`. */
  producer?: EventProducer;
  codec?: SingleObjectCodec;
}

export interface EmitterStats {
  sent: number;
  delivered: number;
  failed: number;
  maxInFlight: number;
}

interface Pending extends OutgoingRecord {
  readonly size: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Publishes trajectory events. Every event of a trajectory is keyed by its id, so its events stay in
 * order on one partition. `emit` returns once the event is accepted; one sender sends accepted events in
 * order, a batch at a time. At most `config.sdkMaxBufferedEvents` events are accepted and not yet
 * acknowledged: past that, `emit` waits (back-pressure). Delivery failures are raised by `flush` and `close`.
 */
export class Emitter {
  readonly config: EmitterConfig;
  readonly codec: SingleObjectCodec;
  readonly redactor: Redactor;
  readonly stats: EmitterStats = { sent: 0, delivered: 0, failed: 0, maxInFlight: 0 };
  readonly eventsTopic: string;
  readonly feedbackTopic: string;

  private readonly producer: EventProducer;
  private readonly slots: Slots;
  private readonly queue: Pending[] = [];
  private failures: unknown[] = [];
  private inFlightCount = 0;
  private sender: Promise<void> | null = null;
  private state: 'new' | 'starting' | 'started' | 'closed' = 'new';
  private starting: Promise<void> | null = null;

  constructor(options: EmitterOptions = {}) {
    this.config = options.config ?? EmitterConfig.fromEnv();
    this.codec = options.codec ?? new SingleObjectCodec(this.config.limits);
    this.redactor = options.redactor ?? ((text) => text);
    this.producer = options.producer ?? new KafkaProducer(this.config, options.clientId);
    this.slots = new Slots(this.config.sdkMaxBufferedEvents);
    this.eventsTopic = this.config.topic(EVENTS_TOPIC);
    this.feedbackTopic = this.config.topic(FEEDBACK_TOPIC);
  }

  /** A started emitter. */
  static async connect(options: EmitterOptions = {}): Promise<Emitter> {
    const emitter = new Emitter(options);
    await emitter.start();
    return emitter;
  }

  // --- lifecycle ---------------------------------------------------------------------------
  async start(): Promise<void> {
    if (this.state === 'closed') throw new Error('emitter is closed');
    if (this.starting === null) {
      this.state = 'starting';
      this.starting = this.producer.connect().then(() => {
        this.state = 'started';
      });
      this.starting.catch(() => {
        this.starting = null;
        this.state = 'new';
      });
    }
    await this.starting;
  }

  /** Wait until every accepted event is acknowledged; throw DeliveryError if any could not be delivered. */
  async flush(): Promise<void> {
    while (this.sender !== null) await this.sender;
    if (this.failures.length > 0) {
      const failures = this.failures;
      this.failures = [];
      throw new DeliveryError(`${failures.length} event(s) were not delivered; first error: ${String(failures[0])}`, {
        cause: failures[0],
      });
    }
  }

  /** Flush, then disconnect (also when the flush throws). */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    try {
      if (this.state !== 'new') await this.flush();
    } finally {
      const wasStarted = this.state !== 'new';
      this.state = 'closed';
      if (wasStarted) await this.producer.disconnect();
    }
  }

  /** Run `fn` with this emitter started, and close it afterwards (the Python SDK's `async with`). */
  async run<T>(fn: (emitter: Emitter) => Promise<T>): Promise<T> {
    await this.start();
    try {
      return await fn(this);
    } finally {
      await this.close();
    }
  }

  // --- publishing --------------------------------------------------------------------------
  /** Encode one event (throws EncodeError if it does not fit its schema) and hand it to the sender. */
  async emit(name: string, record: AvroRecord, options: { key: string; topic?: string }): Promise<void> {
    const value = this.codec.encode(name, record);
    await this.sendEncoded(value, Buffer.from(options.key, 'utf8'), options.topic ?? this.eventsTopic);
  }

  async sendEncoded(value: Buffer, key: Buffer, topic: string): Promise<void> {
    if (this.state !== 'started') {
      throw new Error('emitter is not started: use `await Emitter.connect()`, `emitter.run(...)` or `await start()`');
    }
    await this.slots.acquire();
    this.inFlightCount += 1;
    this.stats.maxInFlight = Math.max(this.stats.maxInFlight, this.inFlightCount);
    this.stats.sent += 1;
    this.queue.push({ topic, key, value, size: key.length + value.length });
    if (this.sender === null) this.sender = this.drain();
  }

  /** Sends what is queued, a batch at a time, until the queue is empty; one sender at a time keeps the order. */
  private async drain(): Promise<void> {
    // Yield once first, so that the caller has recorded this sender before the loop can end and clear it.
    await Promise.resolve();
    try {
      while (this.queue.length > 0) {
        if (this.config.producerLingerMs > 0) await sleep(this.config.producerLingerMs);
        const batch = this.takeBatch();
        try {
          await this.producer.send(batch);
          this.stats.delivered += batch.length;
        } catch (err) {
          this.stats.failed += batch.length;
          this.failures.push(err);
        } finally {
          this.inFlightCount -= batch.length;
          this.slots.release(batch.length);
        }
      }
    } finally {
      // Set in the same step as the loop saw the queue empty, so that an event queued later starts a new sender.
      this.sender = null;
    }
  }

  private takeBatch(): Pending[] {
    let bytes = 0;
    let count = 0;
    for (const p of this.queue) {
      if (count > 0 && bytes + p.size > this.config.producerMaxBatchBytes) break;
      bytes += p.size;
      count += 1;
    }
    return this.queue.splice(0, count);
  }

  /** Events accepted and not yet acknowledged. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  // --- conveniences ------------------------------------------------------------------------
  /** A trajectory handle: `await emitter.trajectory(task, {agentId}).run(async (t) => {...})` sends start and end. */
  trajectory(taskDescription: string, options: TrajectoryOptions): Trajectory {
    return new Trajectory(this, taskDescription, options);
  }

  /** Publish a late reward or review for a finished trajectory. */
  async feedback(trajectoryId: string, options: Omit<FeedbackOptions, 'scrub'> = {}): Promise<void> {
    const record = feedbackRecord(trajectoryId, { ...options, scrub: this.redactor });
    await this.emit(FEEDBACK, record, { key: trajectoryId, topic: this.feedbackTopic });
  }
}
