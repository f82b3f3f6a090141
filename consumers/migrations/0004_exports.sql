-- What the training exports need to give back a trajectory exactly (issue 15): each message's content as
-- the agent sent it (the Avro record as JSON: a tool call's arguments, a tool's result, a redaction's
-- reason) and its reasoning, and each turn's behaviour log-probabilities and token ids where the serving
-- model returned them. Rows landed before this migration have none: the exports say so and skip them.

ALTER TABLE {db}.messages ADD COLUMN IF NOT EXISTS content String DEFAULT '' AFTER text;
ALTER TABLE {db}.messages ADD COLUMN IF NOT EXISTS reasoning Nullable(String) AFTER content;
ALTER TABLE {db}.turns ADD COLUMN IF NOT EXISTS logprob_tokens Array(String) AFTER output_tokens;
ALTER TABLE {db}.turns ADD COLUMN IF NOT EXISTS logprobs Array(Float64) AFTER logprob_tokens;
-- -1 where the server gave a token's text but not its id.
ALTER TABLE {db}.turns ADD COLUMN IF NOT EXISTS token_ids Array(Int64) AFTER logprobs;
-- The agent's system message (the trajectory_start's), which chat-format exports put first.
ALTER TABLE {db}.trajectories ADD COLUMN IF NOT EXISTS system_message String DEFAULT '' AFTER task;
