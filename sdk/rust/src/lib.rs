#![doc = include_str!("../README.md")]

mod avro_json;
pub mod codec;
pub mod config;
pub mod contract;
mod contract_generated;
pub mod emitter;
pub mod error;
pub mod events;
mod json_text;
pub mod limits;
pub mod trajectory;

pub use avro_json::{from_value as avro_json_from_value, to_value as avro_json_to_value};
pub use codec::{Codec, Decoded};
pub use config::{EmitterConfig, EVENTS_TOPIC, FEEDBACK_TOPIC};
pub use emitter::{Emitter, EmitterBuilder, EmitterStats, Redactor};
pub use error::{Error, Result};
pub use events::{
    Content, EndOptions, EntityRef, Environment, FeedbackOptions, Message, ModelInfo, Outcome, Resource, Role,
    StartOptions, TokenLogprob, ToolStatus, TurnOptions,
};
pub use json_text::json_text;
pub use limits::Limits;
pub use serde_json::json;
pub use trajectory::Trajectory;
