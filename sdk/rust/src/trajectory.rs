//! A trajectory handle: start, turns, end, like the Python SDK's `Trajectory`.

use crate::emitter::Emitter;
use crate::error::{Error, Result};
use crate::events::{
    end_record, new_id, start_record, turn_record, EndOptions, Message, Outcome, StartOptions, TurnOptions,
};

/// One attempt at one task. Made by [`Emitter::trajectory`]; set the start fields, then `start`.
///
/// Dropped after `start` without `end`, it ends itself: with outcome `error` (error type `panic`)
/// while a panic unwinds, else with its default outcome, `abandoned` unless set (a `?` that returns
/// early is no success, which is why this differs from the Python context manager's `success`).
pub struct Trajectory {
    emitter: Emitter,
    trajectory_id: String,
    task_description: String,
    agent_id: String,
    options: StartOptions,
    default_outcome: Outcome,
    turn_count: i32,
    started: bool,
    ended: bool,
}

impl Trajectory {
    pub(crate) fn new(emitter: Emitter, task_description: String, agent_id: String) -> Trajectory {
        Trajectory {
            emitter,
            trajectory_id: new_id(),
            task_description,
            agent_id,
            options: StartOptions::default(),
            default_outcome: Outcome::Abandoned,
            turn_count: 0,
            started: false,
            ended: false,
        }
    }

    /// Use this id instead of a new UUID.
    pub fn with_id(mut self, trajectory_id: impl Into<String>) -> Trajectory {
        self.trajectory_id = trajectory_id.into();
        self
    }

    /// The start event's optional fields (domain, tags, user, entities, ...).
    pub fn with_options(mut self, options: StartOptions) -> Trajectory {
        self.options = options;
        self
    }

    /// The outcome sent when the handle is dropped without `end` (and not while panicking).
    pub fn default_outcome(mut self, outcome: Outcome) -> Trajectory {
        self.default_outcome = outcome;
        self
    }

    pub fn trajectory_id(&self) -> &str {
        &self.trajectory_id
    }

    pub fn turn_count(&self) -> i32 {
        self.turn_count
    }

    /// Send the start event (once; a second call does nothing).
    pub fn start(&mut self) -> Result<()> {
        if self.started {
            return Ok(());
        }
        let emitter = &self.emitter;
        let record = start_record(&self.trajectory_id, &self.task_description, &self.agent_id, &self.options, &|t| {
            emitter.scrub(t)
        });
        emitter.emit("trajectory_start", &record, &self.trajectory_id, None)?;
        self.started = true;
        Ok(())
    }

    /// Send one turn; returns its index.
    pub fn turn(&mut self, messages: &[Message], options: TurnOptions) -> Result<i32> {
        self.check_open()?;
        let index = self.turn_count;
        let emitter = &self.emitter;
        let record = turn_record(&self.trajectory_id, index, messages, &options, &|t| emitter.scrub(t));
        emitter.emit("turn", &record, &self.trajectory_id, None)?;
        self.turn_count += 1;
        Ok(index)
    }

    /// Send the end event, with the number of turns sent.
    pub fn end(&mut self, outcome: Outcome, options: EndOptions) -> Result<()> {
        self.check_open()?;
        let emitter = &self.emitter;
        let record = end_record(&self.trajectory_id, outcome, Some(self.turn_count), &options, &|t| emitter.scrub(t));
        emitter.emit("trajectory_end", &record, &self.trajectory_id, None)?;
        self.ended = true;
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if !self.started {
            return Err(Error::State(format!("trajectory {} has not started: call start()", self.trajectory_id)));
        }
        if self.ended {
            return Err(Error::State(format!("trajectory {} has already ended", self.trajectory_id)));
        }
        Ok(())
    }
}

impl Drop for Trajectory {
    fn drop(&mut self) {
        if !self.started || self.ended {
            return;
        }
        let (outcome, options) = if std::thread::panicking() {
            (Outcome::Error, EndOptions { error_type: Some("panic".into()), ..EndOptions::default() })
        } else {
            (self.default_outcome, EndOptions::default())
        };
        // Nowhere to report a failure from drop: `flush`/`close` report undelivered events.
        let _ = self.end(outcome, options);
    }
}
