//! The emitter: encodes events and hands them to an idempotent librdkafka producer.
//!
//! Sending is synchronous and does not wait for the network: `ThreadedProducer::send` only enqueues,
//! librdkafka's own thread delivers, and a delivery callback counts what was acknowledged and keeps
//! what failed. `flush` and `close` wait for every accepted event and return the failures, the same
//! contract as the Python `AsyncEmitter`. No async runtime is needed, so the crate works under tokio,
//! under another runtime or none; in async code only `flush`/`close` block (use `spawn_blocking`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use serde_json::Value as Json;

use crate::codec::Codec;
use crate::config::{EmitterConfig, EVENTS_TOPIC, FEEDBACK_TOPIC};
use crate::error::{Error, Result};
use crate::events::{feedback_record, FeedbackOptions};
use crate::trajectory::Trajectory;

/// A text scrubber run on every free-text field before encoding (Python's `redactor`).
pub type Redactor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How many events were handed to the producer, acknowledged by the broker, or given up on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitterStats {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// Counts deliveries and keeps failures, called on librdkafka's polling thread.
#[derive(Default)]
struct DeliveryTracker {
    sent: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(err.to_string());
            }
        }
    }
}

struct Inner {
    config: EmitterConfig,
    codec: Codec,
    redactor: Redactor,
    producer: ThreadedProducer<DeliveryTracker>,
    events_topic: String,
    feedback_topic: String,
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // librdkafka purges what is still queued when the producer is dropped: give it the time an event
        // has anyway. Failures found here are lost; `close` returns them.
        if !self.closed.load(Ordering::Acquire) {
            let _ = self.producer.flush(Timeout::After(self.delivery_timeout()));
        }
    }
}

impl Inner {
    fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.config.producer_request_timeout_ms)
    }
}

/// Publishes trajectory events. Cheap to clone: clones share one producer.
///
/// Every event of a trajectory is keyed by its id, so a trajectory's events stay in order on one
/// partition (murmur2, as the Python and Java producers place them). At most
/// `sdk_max_buffered_events` events wait for acknowledgement: past that, sending waits.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// Builds an [`Emitter`]; settings default to `EmitterConfig::from_env()`.
pub struct EmitterBuilder {
    config: Option<EmitterConfig>,
    redactor: Option<Redactor>,
    client_id: String,
}

impl EmitterBuilder {
    pub fn config(mut self, config: EmitterConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// A hook run on every free-text field (task, message text, tool arguments and results, reasoning,
    /// entity names, comments) before the event is encoded: what it returns is what leaves the process.
    pub fn redactor(mut self, redactor: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.redactor = Some(Arc::new(redactor));
        self
    }

    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    pub fn build(self) -> Result<Emitter> {
        let config = match self.config {
            Some(config) => {
                config.validate()?;
                config
            }
            None => EmitterConfig::from_env()?,
        };
        let producer = producer_config(&config, &self.client_id).create_with_context(DeliveryTracker::default())?;
        Ok(Emitter {
            inner: Arc::new(Inner {
                codec: Codec::new(config.limits())?,
                redactor: self.redactor.unwrap_or_else(|| Arc::new(|text: &str| text.to_string())),
                producer,
                events_topic: config.topic(EVENTS_TOPIC),
                feedback_topic: config.topic(FEEDBACK_TOPIC),
                closed: AtomicBool::new(false),
                config,
            }),
        })
    }
}

/// librdkafka's settings for the same producer the Python SDK makes with aiokafka.
fn producer_config(config: &EmitterConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.bootstrap())
        .set("client.id", client_id)
        .set("enable.idempotence", "true") // retries never duplicate or reorder
        .set("acks", "all")
        // librdkafka's default is consistent_random (CRC32): murmur2 puts a key on the partition the
        // Python, Java and TypeScript producers pick, so a trajectory's events share one partition.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", config.producer_linger_ms.to_string())
        .set("batch.size", config.producer_max_batch_bytes.to_string())
        .set("compression.type", config.producer_compression.as_str())
        .set("request.timeout.ms", config.producer_request_timeout_ms.to_string())
        // aiokafka expires a batch after request_timeout_ms: an event is delivered or failed by then.
        .set("message.timeout.ms", config.producer_request_timeout_ms.to_string())
        .set("message.max.bytes", config.limits().message_bytes().to_string())
        .set("queue.buffering.max.messages", config.sdk_max_buffered_events.max(1).to_string())
        .set("security.protocol", config.security_protocol.to_lowercase());
    if config.security_protocol.starts_with("SASL") {
        c.set("sasl.mechanism", config.sasl_mechanism.as_deref().unwrap_or("PLAIN"));
        if let Some(user) = &config.sasl_username {
            c.set("sasl.username", user);
        }
        if let Some(password) = &config.sasl_password {
            c.set("sasl.password", password);
        }
    }
    for (key, path) in [
        ("ssl.ca.location", &config.ssl_cafile),
        ("ssl.certificate.location", &config.ssl_certfile),
        ("ssl.key.location", &config.ssl_keyfile),
    ] {
        if let Some(path) = path {
            c.set(key, path);
        }
    }
    c
}

impl Emitter {
    pub fn builder() -> EmitterBuilder {
        EmitterBuilder { config: None, redactor: None, client_id: "trajstream-sdk-rust".into() }
    }

    /// An emitter with the settings of the `TRAJSTREAM_*` variables and no redaction.
    pub fn from_env() -> Result<Emitter> {
        Emitter::builder().build()
    }

    pub fn config(&self) -> &EmitterConfig {
        &self.inner.config
    }

    pub fn codec(&self) -> &Codec {
        &self.inner.codec
    }

    pub fn events_topic(&self) -> &str {
        &self.inner.events_topic
    }

    pub fn feedback_topic(&self) -> &str {
        &self.inner.feedback_topic
    }

    /// The redaction hook, applied by the record builders.
    pub fn scrub(&self, text: &str) -> String {
        (self.inner.redactor)(text)
    }

    /// A trajectory handle: `start`, then `turn`s, then `end`.
    pub fn trajectory(&self, task_description: impl Into<String>, agent_id: impl Into<String>) -> Trajectory {
        Trajectory::new(self.clone(), task_description.into(), agent_id.into())
    }

    /// A late reward or review for a trajectory, on the feedback topic.
    pub fn feedback(&self, trajectory_id: &str, options: FeedbackOptions) -> Result<()> {
        let record = feedback_record(trajectory_id, &options, &|t| self.scrub(t));
        self.emit("feedback", &record, trajectory_id, Some(&self.inner.feedback_topic.clone()))
    }

    /// Encode one record (Avro JSON) with the newest version of its schema and hand it to the producer,
    /// keyed by `key`, on `topic` (default: the events topic).
    pub fn emit(&self, record: &str, value: &Json, key: &str, topic: Option<&str>) -> Result<()> {
        let data = self.inner.codec.encode(record, value)?;
        self.send_encoded(&data, key.as_bytes(), topic.unwrap_or(&self.inner.events_topic))
    }

    /// Enqueue encoded bytes; waits while `sdk_max_buffered_events` events are unacknowledged.
    pub fn send_encoded(&self, data: &[u8], key: &[u8], topic: &str) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::State("emitter is closed".into()));
        }
        let mut record = BaseRecord::to(topic).key(key).payload(data);
        loop {
            match self.inner.producer.send(record) {
                Ok(()) => {
                    self.inner.producer.context().sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Back-pressure: the producer's thread drains the queue as the broker acknowledges.
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => return Err(err.into()),
            }
        }
    }

    /// Wait until every accepted event is acknowledged; an error if any could not be delivered.
    pub fn flush(&self) -> Result<()> {
        // Each event is delivered or failed within message.timeout.ms; the margin covers the last batch.
        let wait = self.inner.delivery_timeout() + Duration::from_secs(5);
        self.inner.producer.flush(Timeout::After(wait))?;
        let failures =
            std::mem::take(&mut *self.inner.producer.context().failures.lock().unwrap_or_else(|p| p.into_inner()));
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(Error::Delivery { failed: failures.len(), first: first.clone() }),
        }
    }

    /// Flush, then refuse further events (every clone of this emitter is closed).
    pub fn close(&self) -> Result<()> {
        let flushed = self.flush();
        self.inner.closed.store(true, Ordering::Release);
        flushed
    }

    pub fn stats(&self) -> EmitterStats {
        let t = self.inner.producer.context();
        EmitterStats {
            sent: t.sent.load(Ordering::Relaxed),
            delivered: t.delivered.load(Ordering::Relaxed),
            failed: t.failed.load(Ordering::Relaxed),
        }
    }
}
