//! The records the builders make: shaped like the Python SDK's, with persist=false placeholders and the
//! redaction hook applied where Python applies `scrub`, and they encode and decode with the codec.
//!
//! With TRAJSTREAM_PARITY_OUT set, `records_for_parity` writes a fixed scenario's encoded events there:
//! tests/sdk/test_rust.py decodes them with the Python codec and compares them with what the Python
//! builders make from the same inputs.

use serde_json::{json, Value as Json};
use trajstream_sdk::codec::hex;
use trajstream_sdk::events::{end_record, feedback_record, start_record, turn_record};
use trajstream_sdk::{
    Codec, Content, EndOptions, EntityRef, Environment, FeedbackOptions, Limits, Message, ModelInfo, Outcome, Resource,
    Role, StartOptions, TokenLogprob, ToolStatus, TurnOptions,
};

const T0: i64 = 1_760_000_000_123;

fn scrub(text: &str) -> String {
    text.replace("secret", "[REDACTED]")
}

fn every_kind() -> Vec<Message> {
    let at = |i: i64, m: Message| m.message_id(format!("m{i}")).timestamp_ms(T0 + i);
    vec![
        at(0, Message::text(Role::System, "be brief, secret").reasoning("secret plan")),
        at(1, Message::new(Role::Assistant, Content::tool_call("lookup", "c1", json!({"q": "secret é", "n": 2}))))
            .available_tools(["lookup"])
            .active_entities(["secret corp"]),
        at(
            2,
            Message::new(
                Role::Tool,
                Content::tool_response("lookup", "c1", json!("not json: secret"), ToolStatus::Error),
            ),
        ),
        at(3, Message::new(Role::Assistant, Content::widget("chart", json!("{\"x\": [1, 2]}")))).send_to_user(false),
        at(4, Message::new(Role::Assistant, Content::structured(json!([1.5, null, true])))),
        at(5, Message::new(Role::Assistant, Content::redacted("pii", "text"))),
        at(6, Message::text(Role::User, "my card is 4111 secret").reasoning("hidden").persist(false)),
    ]
}

fn start_options() -> StartOptions {
    StartOptions {
        domain: "billing".into(),
        agent_name: Some("bot".into()),
        conversation_id: Some("conv".into()),
        framework: "rust".into(),
        environment: Environment::Staging,
        tags: vec!["a".into(), "b".into()],
        parent_trajectory_id: Some("parent".into()),
        parent_span_id: Some("pspan".into()),
        referrer: Some("https://x".into()),
        user_id: Some("u1".into()),
        user_attributes: [("plan".to_string(), "pro".to_string())].into(),
        entities: vec![EntityRef { name: "secret corp".into(), entity_type: Some("company".into()), entity_id: None }],
        resources: vec![Resource { uri: "file:///a".into(), kind: "file".into(), description: Some("d".into()) }],
        custom_context: Some(json!({"k": "secret"})),
        system_message: Some("system secret".into()),
        timestamp_ms: Some(T0),
    }
}

fn turn_options() -> TurnOptions {
    TurnOptions {
        model: Some(ModelInfo {
            request_model: Some("m".into()),
            provider: Some("openai".into()),
            input_tokens: Some(10),
            output_tokens: Some(3),
            logprobs: Some(vec![TokenLogprob { token: "hi".into(), logprob: -0.25, token_id: Some(7) }]),
            ..ModelInfo::default()
        }),
        duration_ms: 42,
        error: true,
        error_type: Some("Timeout".into()),
        turn_reward: Some(0.5),
        span_id: Some("0123456789abcdef".into()),
        parent_span_id: None,
        timestamp_ms: Some(T0 + 10),
    }
}

fn scenario() -> Vec<(&'static str, Json)> {
    let end = EndOptions {
        final_reward: Some(1.0),
        feedback_score: Some(0.75),
        human_reviewed: true,
        error_type: Some("E".into()),
        error_message: Some("secret failure".into()),
        timestamp_ms: Some(T0 + 20),
    };
    let feedback = FeedbackOptions {
        source: "reviewer".into(),
        reward: Some(0.8),
        score: None,
        human_reviewed: true,
        reviewer: Some("ann".into()),
        comment: Some("secret comment".into()),
        timestamp_ms: Some(T0 + 30),
    };
    vec![
        ("trajectory_start", start_record("t1", "task with secret", "agent", &start_options(), &scrub)),
        ("turn", turn_record("t1", 0, &every_kind(), &turn_options(), &scrub)),
        ("trajectory_end", end_record("t1", Outcome::Partial, Some(1), &end, &scrub)),
        ("feedback", feedback_record("t1", &feedback, &scrub)),
    ]
}

#[test]
fn every_record_encodes_and_decodes_to_itself() {
    let codec = Codec::new(Limits::default()).unwrap();
    for (name, record) in scenario() {
        let data = codec.encode(name, &record).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&data[..2], &[0xc3, 0x01]);
        let decoded = codec.decode(&data).unwrap();
        assert_eq!(decoded.record, name);
        assert_eq!(decoded.value, record, "{name}");
    }
}

#[test]
fn a_persist_false_message_leaves_only_a_placeholder() {
    let record = turn_record("t1", 0, &every_kind(), &turn_options(), &scrub);
    let private = &record["messages"][6];
    assert_eq!(
        private["content"],
        json!({"dev.trajstream.events.RedactedContent": {"reason": "persist=false", "original_kind": "text"}})
    );
    assert_eq!(private["reasoning"], Json::Null);
    assert_eq!(private["visibility"], json!({"send_to_user": true, "persist": false}));
    assert!(!record.to_string().contains("4111"), "the private text left the process");
}

#[test]
fn the_redaction_hook_runs_on_free_text_only() {
    let turn = turn_record("t1", 0, &every_kind(), &turn_options(), &scrub);
    let m = &turn["messages"];
    assert_eq!(m[0]["content"]["dev.trajstream.events.TextContent"]["text"], "be brief, [REDACTED]");
    assert_eq!(m[0]["reasoning"], json!({"string": "[REDACTED] plan"}));
    // Python's json.dumps: compact, insertion order, non-ASCII escaped.
    assert_eq!(m[1]["content"]["dev.trajstream.events.ToolCall"]["arguments"], r#"{"q":"[REDACTED] \u00e9","n":2}"#);
    assert_eq!(
        m[1]["context_snapshot"]["dev.trajstream.events.ContextSnapshot"]["active_entities"],
        json!(["[REDACTED] corp"])
    );
    assert_eq!(m[2]["content"]["dev.trajstream.events.ToolResponse"]["result"], r#""not json: [REDACTED]""#);
    assert_eq!(m[2]["content"]["dev.trajstream.events.ToolResponse"]["status"], "error");
    assert_eq!(m[3]["content"]["dev.trajstream.events.Widget"]["data"], r#"{"x": [1, 2]}"#);
    let start = start_record("t1", "task with secret", "agent", &start_options(), &scrub);
    assert_eq!(start["task_description"], "task with [REDACTED]");
    assert_eq!(start["context"]["custom"], json!({"string": r#"{"k":"[REDACTED]"}"#}));
    assert_eq!(start["system_message"], json!({"string": "system [REDACTED]"}));
    assert_eq!(start["context"]["entities"][0]["name"], "[REDACTED] corp");
    assert_eq!(start["agent_id"], "agent");
}

#[test]
fn ids_are_uuids_and_timestamps_are_milliseconds() {
    let record = turn_record("t1", 0, &[Message::text(Role::User, "hi")], &TurnOptions::default(), &scrub);
    let event_id = record["event_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(event_id).unwrap().get_version_num(), 4);
    let message_id = record["messages"][0]["message_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(message_id).unwrap().get_version_num(), 4);
    let span = record["span_id"].as_str().unwrap();
    assert!(span.len() == 16 && span.chars().all(|c| c.is_ascii_hexdigit()), "{span}");
    let ts = record["timestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now - ts).abs() < 60_000, "{ts} is not milliseconds near {now}");
    assert_eq!(record["duration_ms"], 0);
    assert_eq!(record["model"], Json::Null);
    assert_eq!(record["messages"][0]["context_snapshot"], Json::Null);
}

#[test]
fn an_event_over_the_limit_is_refused() {
    let codec = Codec::new(Limits::new(1024, 1024).unwrap()).unwrap();
    let big = turn_record("t1", 0, &[Message::text(Role::User, "x".repeat(2000))], &TurnOptions::default(), &scrub);
    let err = codec.encode("turn", &big).unwrap_err().to_string();
    assert!(err.contains("over the limit of 1024"), "{err}");
}

#[test]
fn a_record_that_does_not_fit_names_the_field() {
    let codec = Codec::new(Limits::default()).unwrap();
    let mut record = feedback_record("t1", &FeedbackOptions::default(), &scrub);
    record["reward"] = json!({"string": "high"});
    let err = codec.encode("feedback", &record).unwrap_err().to_string();
    assert!(err.contains("Feedback.reward") && err.contains("no branch \"string\""), "{err}");
}

#[test]
fn records_for_parity() {
    let Ok(out) = std::env::var("TRAJSTREAM_PARITY_OUT") else {
        println!("TRAJSTREAM_PARITY_OUT is not set: nothing written");
        return;
    };
    let codec = Codec::new(Limits::default()).unwrap();
    let events: Vec<Json> = scenario()
        .into_iter()
        .map(|(name, record)| json!({"record": name, "hex": hex(&codec.encode(name, &record).unwrap())}))
        .collect();
    std::fs::write(out, serde_json::to_string_pretty(&events).unwrap()).unwrap();
}
