//! What an emitter needs to know, read from the same `TRAJSTREAM_*` variables with the same defaults
//! as the Python SDK's `EmitterConfig.from_env()`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::limits::{Limits, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_TRAJECTORY_BYTES};

/// Topics the emitter writes to, after `topic_prefix`.
pub const EVENTS_TOPIC: &str = "events";
pub const FEEDBACK_TOPIC: &str = "feedback";

const SECURITY_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// The emitter's settings; each field reads `TRAJSTREAM_<FIELD>` in [`EmitterConfig::from_env`].
#[derive(Clone, PartialEq, Eq)]
pub struct EmitterConfig {
    pub kafka_bootstrap: Option<String>,
    pub broker_host: String,
    pub broker_port: u16,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub ssl_cafile: Option<String>,
    pub ssl_certfile: Option<String>,
    pub ssl_keyfile: Option<String>,
    pub topic_prefix: String,
    pub producer_linger_ms: u64,
    pub producer_max_batch_bytes: usize,
    pub producer_compression: String,
    pub producer_request_timeout_ms: u64,
    pub sdk_max_buffered_events: usize,
    pub max_event_bytes: usize,
    pub assembly_max_bytes: usize,
    /// Set, it asks for the Confluent wire format, which this crate does not write: refused.
    pub schema_registry_url: Option<String>,
}

impl std::fmt::Debug for EmitterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything but the password, as Python's repr=False does.
        f.debug_struct("EmitterConfig")
            .field("bootstrap", &self.bootstrap())
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("topic_prefix", &self.topic_prefix)
            .field("producer_linger_ms", &self.producer_linger_ms)
            .field("producer_max_batch_bytes", &self.producer_max_batch_bytes)
            .field("producer_compression", &self.producer_compression)
            .field("producer_request_timeout_ms", &self.producer_request_timeout_ms)
            .field("sdk_max_buffered_events", &self.sdk_max_buffered_events)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("assembly_max_bytes", &self.assembly_max_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            kafka_bootstrap: None,
            broker_host: "127.0.0.1".into(),
            broker_port: 9092,
            security_protocol: "PLAINTEXT".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_cafile: None,
            ssl_certfile: None,
            ssl_keyfile: None,
            topic_prefix: "trajstream.".into(),
            producer_linger_ms: 5,
            producer_max_batch_bytes: 512 * 1024,
            producer_compression: "none".into(),
            producer_request_timeout_ms: 30_000,
            sdk_max_buffered_events: 10_000,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            assembly_max_bytes: DEFAULT_MAX_TRAJECTORY_BYTES,
            schema_registry_url: None,
        }
    }
}

impl EmitterConfig {
    /// Read the process environment (names case-insensitive, as the platform reads them).
    pub fn from_env() -> Result<EmitterConfig> {
        Self::from_vars(std::env::vars())
    }

    /// Read `TRAJSTREAM_*` variables from `vars`; unset ones keep their default.
    pub fn from_vars<K: AsRef<str>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Result<EmitterConfig> {
        let env: HashMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.as_ref().to_uppercase(), v.into())).collect();
        let text = |name: &str| env.get(&format!("TRAJSTREAM_{}", name.to_uppercase())).cloned();
        let mut c = EmitterConfig::default();
        let set = |slot: &mut String, name: &str| {
            if let Some(v) = text(name) {
                *slot = v;
            }
        };
        set(&mut c.broker_host, "broker_host");
        set(&mut c.security_protocol, "security_protocol");
        set(&mut c.topic_prefix, "topic_prefix");
        set(&mut c.producer_compression, "producer_compression");
        c.kafka_bootstrap = text("kafka_bootstrap").or(c.kafka_bootstrap);
        c.sasl_mechanism = text("sasl_mechanism");
        c.sasl_username = text("sasl_username");
        c.sasl_password = text("sasl_password");
        c.ssl_cafile = text("ssl_cafile");
        c.ssl_certfile = text("ssl_certfile");
        c.ssl_keyfile = text("ssl_keyfile");
        c.schema_registry_url = text("schema_registry_url");
        number(&text, "broker_port", &mut c.broker_port)?;
        number(&text, "producer_linger_ms", &mut c.producer_linger_ms)?;
        number(&text, "producer_max_batch_bytes", &mut c.producer_max_batch_bytes)?;
        number(&text, "producer_request_timeout_ms", &mut c.producer_request_timeout_ms)?;
        number(&text, "sdk_max_buffered_events", &mut c.sdk_max_buffered_events)?;
        number(&text, "max_event_bytes", &mut c.max_event_bytes)?;
        number(&text, "assembly_max_bytes", &mut c.assembly_max_bytes)?;
        c.validate()?;
        Ok(c)
    }

    /// Refuse settings that cannot work, with the variable to change.
    pub fn validate(&self) -> Result<()> {
        if !SECURITY_PROTOCOLS.contains(&self.security_protocol.as_str()) {
            return Err(Error::Configuration(format!(
                "TRAJSTREAM_SECURITY_PROTOCOL={:?}: use one of {}",
                self.security_protocol,
                SECURITY_PROTOCOLS.join(", ")
            )));
        }
        if !["none", "gzip"].contains(&self.producer_compression.as_str()) {
            return Err(Error::Configuration("TRAJSTREAM_PRODUCER_COMPRESSION must be none or gzip".into()));
        }
        if self.schema_registry_url.is_some() {
            return Err(Error::Configuration(
                "TRAJSTREAM_SCHEMA_REGISTRY_URL is set, but the Rust SDK writes Avro single-object encoding only \
                 (no Confluent wire format): unset it"
                    .into(),
            ));
        }
        Limits::new(self.max_event_bytes, self.assembly_max_bytes).map(|_| ())
    }

    /// `host:port` list of the brokers.
    pub fn bootstrap(&self) -> String {
        self.kafka_bootstrap.clone().unwrap_or_else(|| format!("{}:{}", self.broker_host, self.broker_port))
    }

    pub fn limits(&self) -> Limits {
        Limits { max_event_bytes: self.max_event_bytes, max_trajectory_bytes: self.assembly_max_bytes }
    }

    /// A topic's full name: the prefix and the name.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }
}

fn number<T: std::str::FromStr>(text: &impl Fn(&str) -> Option<String>, name: &str, slot: &mut T) -> Result<()> {
    if let Some(raw) = text(name) {
        *slot = raw.trim().parse().map_err(|_| {
            Error::Configuration(format!("TRAJSTREAM_{}={raw:?} is not a whole number", name.to_uppercase()))
        })?;
    }
    Ok(())
}
