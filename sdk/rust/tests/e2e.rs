//! Emits trajectories to a real broker: runs only when TRAJSTREAM_KAFKA_BOOTSTRAP is set (skips with a
//! note otherwise) and writes the trajectory ids as JSON to TRAJSTREAM_E2E_OUT. tests/sdk/test_rust.py
//! runs it against the test broker and checks what the platform landed in ClickHouse.

use serde_json::json;
use trajstream_sdk::{
    Content, Emitter, EndOptions, FeedbackOptions, Message, Outcome, Role, StartOptions, ToolStatus, TurnOptions,
};

#[test]
fn emits_trajectories_to_the_broker() -> trajstream_sdk::Result<()> {
    if std::env::var("TRAJSTREAM_KAFKA_BOOTSTRAP").is_err() {
        println!("skipped: TRAJSTREAM_KAFKA_BOOTSTRAP is not set (tests/sdk/test_rust.py runs this against a broker)");
        return Ok(());
    }
    let out = std::env::var("TRAJSTREAM_E2E_OUT").expect("TRAJSTREAM_E2E_OUT: where to write the trajectory ids");
    // Settings from the TRAJSTREAM_* variables, as an agent would have them.
    let emitter = Emitter::builder().redactor(|text| text.replace("swordfish", "[REDACTED]")).build()?;

    let mut tools = emitter
        .trajectory("Refund order 42", "rust-e2e-tools")
        .with_options(StartOptions { domain: "billing".into(), ..StartOptions::default() });
    tools.start()?;
    tools.turn(
        &[
            Message::text(Role::User, "Refund order 42, the password is swordfish"),
            Message::new(Role::Assistant, Content::tool_call("issue_refund", "c1", json!({"order": 42}))),
        ],
        TurnOptions::default(),
    )?;
    tools.turn(
        &[
            Message::new(
                Role::Tool,
                Content::tool_response("issue_refund", "c1", json!({"ok": true}), ToolStatus::Success),
            ),
            Message::text(Role::Assistant, "Refunded."),
        ],
        TurnOptions { duration_ms: 120, ..TurnOptions::default() },
    )?;
    tools.end(Outcome::Success, EndOptions { final_reward: Some(1.0), ..EndOptions::default() })?;
    emitter.feedback(
        tools.trajectory_id(),
        FeedbackOptions { reward: Some(0.8), human_reviewed: true, ..FeedbackOptions::default() },
    )?;

    let mut private = emitter.trajectory("Check my card", "rust-e2e-private");
    private.start()?;
    private.turn(
        &[
            Message::text(Role::User, "my card is 4111 1111 1111 1111").persist(false),
            Message::new(Role::Assistant, Content::tool_call("lookup_card", "c2", json!({"last4": "1111"}))),
        ],
        TurnOptions::default(),
    )?;
    private.turn(
        &[
            Message::new(
                Role::Tool,
                Content::tool_response("lookup_card", "c2", json!("card service down"), ToolStatus::Error),
            ),
            Message::text(Role::Assistant, "Sorry, try later."),
        ],
        TurnOptions::default(),
    )?;
    private.end(Outcome::Failure, EndOptions::default())?;

    let mut many = emitter.trajectory("Search three times", "rust-e2e-many");
    many.start()?;
    for (i, status) in [ToolStatus::Timeout, ToolStatus::Success, ToolStatus::Success].into_iter().enumerate() {
        let call_id = format!("s{i}");
        many.turn(
            &[
                Message::new(Role::Assistant, Content::tool_call("search", &call_id, json!({"page": i}))),
                Message::new(Role::Tool, Content::tool_response("search", &call_id, json!({"hits": i}), status)),
            ],
            TurnOptions::default(),
        )?;
    }
    many.end(Outcome::Partial, EndOptions::default())?;

    // Dropped after a turn without `end`: it ends itself, abandoned.
    let dropped = {
        let mut t = emitter.trajectory("Left halfway", "rust-e2e-dropped");
        t.start()?;
        t.turn(&[Message::text(Role::User, "hello?")], TurnOptions::default())?;
        t.trajectory_id().to_string()
    };

    // More keys, so that the partition check cannot pass by chance.
    let mut probes = Vec::new();
    for i in 0..16 {
        let mut t = emitter.trajectory(format!("probe {i}"), "rust-e2e-probe");
        t.start()?;
        t.end(Outcome::Abandoned, EndOptions::default())?;
        probes.push(t.trajectory_id().to_string());
    }

    emitter.close()?;
    let stats = emitter.stats();
    assert_eq!((stats.delivered, stats.failed), (stats.sent, 0), "{stats:?}");
    let ids = json!({
        "tools": tools.trajectory_id(),
        "private": private.trajectory_id(),
        "many": many.trajectory_id(),
        "dropped": dropped,
        "probes": probes,
    });
    std::fs::write(out, ids.to_string()).expect("write TRAJSTREAM_E2E_OUT");
    Ok(())
}
