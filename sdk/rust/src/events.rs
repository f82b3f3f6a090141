//! The event model: message contents and the builders of the records agents publish, shaped exactly
//! as the Python SDK's `events.py` builds them, in the Avro JSON encoding (unions wrapped by type name).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value as Json};

use crate::json_text::json_text;

pub const NAMESPACE: &str = "dev.trajstream.events";

/// A text scrubber (for PII) applied to every free-text field before encoding.
pub type Scrub<'a> = &'a dyn Fn(&str) -> String;

/// A new event, message or trajectory id: a random UUID.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now, in milliseconds since the epoch (events carry timestamp-millis).
pub fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit in i64")
}

macro_rules! symbols {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The Avro enum symbol.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

symbols!(
    /// Who produced a message.
    Role { System => "system", User => "user", Assistant => "assistant", Tool => "tool" }
);
symbols!(
    /// How a tool run went.
    ToolStatus { Success => "success", Error => "error", Timeout => "timeout" }
);
symbols!(
    /// How a trajectory ended.
    Outcome { Success => "success", Failure => "failure", Partial => "partial", Abandoned => "abandoned", Error => "error" }
);
symbols!(
    /// Where the agent runs.
    Environment { Prod => "prod", Staging => "staging", Dev => "dev" }
);

/// What a message carries: exactly one of the content kinds. JSON payloads (`arguments`, `result`,
/// `data`) travel as JSON documents: a string that parses as JSON is taken as already encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text { text: String },
    ToolCall { name: String, call_id: String, arguments: Json },
    ToolResponse { name: String, call_id: String, result: Json, status: ToolStatus },
    Widget { widget_type: String, data: Json },
    Structured { data: Json },
    Redacted { reason: String, original_kind: String },
}

impl Content {
    pub fn text(text: impl Into<String>) -> Content {
        Content::Text { text: text.into() }
    }

    pub fn tool_call(name: impl Into<String>, call_id: impl Into<String>, arguments: Json) -> Content {
        Content::ToolCall { name: name.into(), call_id: call_id.into(), arguments }
    }

    pub fn tool_response(
        name: impl Into<String>,
        call_id: impl Into<String>,
        result: Json,
        status: ToolStatus,
    ) -> Content {
        Content::ToolResponse { name: name.into(), call_id: call_id.into(), result, status }
    }

    pub fn widget(widget_type: impl Into<String>, data: Json) -> Content {
        Content::Widget { widget_type: widget_type.into(), data }
    }

    pub fn structured(data: Json) -> Content {
        Content::Structured { data }
    }

    pub fn redacted(reason: impl Into<String>, original_kind: impl Into<String>) -> Content {
        Content::Redacted { reason: reason.into(), original_kind: original_kind.into() }
    }

    /// text, tool_call, tool_response, widget, structured or redacted.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text { .. } => "text",
            Content::ToolCall { .. } => "tool_call",
            Content::ToolResponse { .. } => "tool_response",
            Content::Widget { .. } => "widget",
            Content::Structured { .. } => "structured",
            Content::Redacted { .. } => "redacted",
        }
    }

    /// The content union's branch, wrapped by its full name.
    pub fn to_record(&self, scrub: Scrub) -> Json {
        let (name, fields) = match self {
            Content::Text { text } => ("TextContent", json!({"text": scrub(text)})),
            Content::ToolCall { name, call_id, arguments } => {
                ("ToolCall", json!({"name": name, "call_id": call_id, "arguments": scrub(&json_text(arguments))}))
            }
            Content::ToolResponse { name, call_id, result, status } => (
                "ToolResponse",
                json!({"name": name, "call_id": call_id, "status": status.as_str(), "result": scrub(&json_text(result))}),
            ),
            Content::Widget { widget_type, data } => {
                ("Widget", json!({"widget_type": widget_type, "data": scrub(&json_text(data))}))
            }
            Content::Structured { data } => ("StructuredContent", json!({"data": scrub(&json_text(data))})),
            // The placeholder's fields are ours, not the agent's text: never scrubbed.
            Content::Redacted { reason, original_kind } => {
                ("RedactedContent", json!({"reason": reason, "original_kind": original_kind}))
            }
        };
        wrap(&format!("{NAMESPACE}.{name}"), fields)
    }
}

/// One message of a turn. `persist(false)` messages leave the process only as a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Content,
    pub reasoning: Option<String>,
    pub send_to_user: bool,
    pub persist: bool,
    pub active_entities: Vec<String>,
    pub available_tools: Vec<String>,
    pub message_id: String,
    pub timestamp_ms: i64,
}

impl Message {
    /// A message with a new id, stamped now, sent to the user and persisted.
    pub fn new(role: Role, content: Content) -> Message {
        Message {
            role,
            content,
            reasoning: None,
            send_to_user: true,
            persist: true,
            active_entities: Vec::new(),
            available_tools: Vec::new(),
            message_id: new_id(),
            timestamp_ms: now_ms(),
        }
    }

    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message::new(role, Content::text(text))
    }

    pub fn reasoning(mut self, reasoning: impl Into<String>) -> Message {
        self.reasoning = Some(reasoning.into());
        self
    }

    pub fn send_to_user(mut self, send_to_user: bool) -> Message {
        self.send_to_user = send_to_user;
        self
    }

    /// `false`: the content never leaves the process; the event carries a RedactedContent placeholder.
    pub fn persist(mut self, persist: bool) -> Message {
        self.persist = persist;
        self
    }

    pub fn active_entities<S: Into<String>>(mut self, entities: impl IntoIterator<Item = S>) -> Message {
        self.active_entities = entities.into_iter().map(Into::into).collect();
        self
    }

    pub fn available_tools<S: Into<String>>(mut self, tools: impl IntoIterator<Item = S>) -> Message {
        self.available_tools = tools.into_iter().map(Into::into).collect();
        self
    }

    pub fn message_id(mut self, message_id: impl Into<String>) -> Message {
        self.message_id = message_id.into();
        self
    }

    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Message {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// The same message with its content replaced by a placeholder and its reasoning dropped.
    pub fn redacted(&self, reason: &str) -> Message {
        Message { content: Content::redacted(reason, self.content.kind()), reasoning: None, ..self.clone() }
    }

    pub fn to_record(&self, scrub: Scrub) -> Json {
        let redacted;
        let msg = if self.persist {
            self
        } else {
            redacted = self.redacted("persist=false");
            &redacted
        };
        let snapshot = if msg.active_entities.is_empty() && msg.available_tools.is_empty() {
            Json::Null
        } else {
            let entities: Vec<String> = msg.active_entities.iter().map(|e| scrub(e)).collect();
            wrap(
                &format!("{NAMESPACE}.ContextSnapshot"),
                json!({"active_entities": entities, "available_tools": msg.available_tools}),
            )
        };
        json!({
            "message_id": msg.message_id,
            "role": msg.role.as_str(),
            "timestamp": msg.timestamp_ms,
            "content": msg.content.to_record(scrub),
            "reasoning": optional("string", msg.reasoning.as_deref().map(scrub)),
            "visibility": {"send_to_user": msg.send_to_user, "persist": msg.persist},
            "context_snapshot": snapshot,
        })
    }
}

/// One sampled token's log-probability under the behaviour policy.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub token_id: Option<i32>,
}

/// The model call behind a turn; field meanings follow the OTel GenAI conventions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo {
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub provider: Option<String>,
    pub model_version: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub response_id: Option<String>,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Vec<TokenLogprob>>,
}

impl ModelInfo {
    pub fn to_record(&self) -> Json {
        let logprobs = self.logprobs.as_ref().map(|tokens| {
            Json::Array(
                tokens
                    .iter()
                    .map(|t| json!({"token": t.token, "token_id": optional("int", t.token_id), "logprob": t.logprob}))
                    .collect(),
            )
        });
        json!({
            "request_model": optional("string", self.request_model.clone()),
            "response_model": optional("string", self.response_model.clone()),
            "provider": optional("string", self.provider.clone()),
            "model_version": optional("string", self.model_version.clone()),
            "input_tokens": optional("long", self.input_tokens),
            "output_tokens": optional("long", self.output_tokens),
            "response_id": optional("string", self.response_id.clone()),
            "finish_reason": optional("string", self.finish_reason.clone()),
            "logprobs": optional("array", logprobs),
        })
    }
}

/// An entity active at the start of a trajectory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityRef {
    pub name: String,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
}

/// A document, file or URL in context at the start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub uri: String,
    pub kind: String,
    pub description: Option<String>,
}

/// The optional fields of a trajectory's start event (Python's `start_record` keyword arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct StartOptions {
    pub domain: String,
    pub agent_name: Option<String>,
    pub conversation_id: Option<String>,
    pub framework: String,
    pub environment: Environment,
    pub tags: Vec<String>,
    pub parent_trajectory_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub referrer: Option<String>,
    pub user_id: Option<String>,
    pub user_attributes: BTreeMap<String, String>,
    pub entities: Vec<EntityRef>,
    pub resources: Vec<Resource>,
    pub custom_context: Option<Json>,
    pub system_message: Option<String>,
    pub timestamp_ms: Option<i64>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            domain: String::new(),
            agent_name: None,
            conversation_id: None,
            framework: String::new(),
            environment: Environment::Dev,
            tags: Vec::new(),
            parent_trajectory_id: None,
            parent_span_id: None,
            referrer: None,
            user_id: None,
            user_attributes: BTreeMap::new(),
            entities: Vec::new(),
            resources: Vec::new(),
            custom_context: None,
            system_message: None,
            timestamp_ms: None,
        }
    }
}

/// The optional fields of a turn event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOptions {
    pub model: Option<ModelInfo>,
    pub duration_ms: i64,
    pub error: bool,
    pub error_type: Option<String>,
    pub turn_reward: Option<f64>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub timestamp_ms: Option<i64>,
}

/// The optional fields of an end event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndOptions {
    pub final_reward: Option<f64>,
    pub feedback_score: Option<f64>,
    pub human_reviewed: bool,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub timestamp_ms: Option<i64>,
}

/// The fields of a feedback event; `source` defaults to `user`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackOptions {
    pub source: String,
    pub reward: Option<f64>,
    pub score: Option<f64>,
    pub human_reviewed: bool,
    pub reviewer: Option<String>,
    pub comment: Option<String>,
    pub timestamp_ms: Option<i64>,
}

impl Default for FeedbackOptions {
    fn default() -> Self {
        FeedbackOptions {
            source: "user".into(),
            reward: None,
            score: None,
            human_reviewed: false,
            reviewer: None,
            comment: None,
            timestamp_ms: None,
        }
    }
}

pub fn start_record(
    trajectory_id: &str,
    task_description: &str,
    agent_id: &str,
    o: &StartOptions,
    scrub: Scrub,
) -> Json {
    let user = match o.user_id.as_deref() {
        Some(user_id) if !user_id.is_empty() => {
            wrap(&format!("{NAMESPACE}.UserContext"), json!({"user_id": user_id, "attributes": o.user_attributes}))
        }
        _ => Json::Null,
    };
    let entities: Vec<Json> = o
        .entities
        .iter()
        .map(|e| {
            json!({
                "name": scrub(&e.name),
                "entity_type": optional("string", e.entity_type.clone()),
                "entity_id": optional("string", e.entity_id.clone()),
            })
        })
        .collect();
    let resources: Vec<Json> = o
        .resources
        .iter()
        .map(|r| json!({"uri": r.uri, "kind": r.kind, "description": optional("string", r.description.clone())}))
        .collect();
    json!({
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "timestamp": o.timestamp_ms.unwrap_or_else(now_ms),
        "task_description": scrub(task_description),
        "domain": o.domain,
        "agent_id": agent_id,
        "agent_name": optional("string", o.agent_name.clone()),
        "conversation_id": optional("string", o.conversation_id.clone()),
        "framework": o.framework,
        "environment": o.environment.as_str(),
        "tags": o.tags,
        "parent_trajectory_id": optional("string", o.parent_trajectory_id.clone()),
        "parent_span_id": optional("string", o.parent_span_id.clone()),
        "context": {
            "referrer": optional("string", o.referrer.clone()),
            "user": user,
            "entities": entities,
            "resources": resources,
            "custom": optional("string", o.custom_context.as_ref().map(|c| scrub(&json_text(c)))),
        },
        "system_message": optional("string", o.system_message.as_deref().map(scrub)),
    })
}

pub fn turn_record(trajectory_id: &str, turn_index: i32, messages: &[Message], o: &TurnOptions, scrub: Scrub) -> Json {
    let messages: Vec<Json> = messages.iter().map(|m| m.to_record(scrub)).collect();
    json!({
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "turn_index": turn_index,
        // Python: uuid.uuid4().hex[:16]
        "span_id": o.span_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_string()),
        "parent_span_id": optional("string", o.parent_span_id.clone()),
        "timestamp": o.timestamp_ms.unwrap_or_else(now_ms),
        "duration_ms": o.duration_ms,
        "error": o.error,
        "error_type": optional("string", o.error_type.clone()),
        "turn_reward": optional("double", o.turn_reward),
        "model": o.model.as_ref().map_or(Json::Null, |m| wrap(&format!("{NAMESPACE}.ModelInfo"), m.to_record())),
        "messages": messages,
    })
}

pub fn end_record(
    trajectory_id: &str,
    outcome: Outcome,
    turn_count: Option<i32>,
    o: &EndOptions,
    scrub: Scrub,
) -> Json {
    json!({
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "timestamp": o.timestamp_ms.unwrap_or_else(now_ms),
        "outcome": outcome.as_str(),
        "final_reward": optional("double", o.final_reward),
        "feedback_score": optional("double", o.feedback_score),
        "human_reviewed": o.human_reviewed,
        "turn_count": optional("int", turn_count),
        "error_type": optional("string", o.error_type.clone()),
        "error_message": optional("string", o.error_message.as_deref().map(scrub)),
    })
}

pub fn feedback_record(trajectory_id: &str, o: &FeedbackOptions, scrub: Scrub) -> Json {
    json!({
        "event_id": new_id(),
        "trajectory_id": trajectory_id,
        "timestamp": o.timestamp_ms.unwrap_or_else(now_ms),
        "source": o.source,
        "reward": optional("double", o.reward),
        "score": optional("double", o.score),
        "human_reviewed": o.human_reviewed,
        "reviewer": optional("string", o.reviewer.clone()),
        "comment": optional("string", o.comment.as_deref().map(scrub)),
    })
}

/// A union branch in the Avro JSON encoding: `{"type name": value}`.
fn wrap(type_name: &str, value: Json) -> Json {
    let mut obj = Map::new();
    obj.insert(type_name.into(), value);
    Json::Object(obj)
}

/// An optional field (`["null", type]`): null, or the value wrapped by its type name.
fn optional<T: Into<Json>>(type_name: &str, value: Option<T>) -> Json {
    value.map_or(Json::Null, |v| wrap(type_name, v.into()))
}
