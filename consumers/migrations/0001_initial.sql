-- trajstream's ClickHouse schema, version 1. Insert-only wide rows (no row updates, no FINAL):
-- each turn, message and tool-call row carries its trajectory's attributes, copied at write time,
-- so dashboards never join. Every query filters on time, the leading part of each sort key after
-- the low-cardinality agent. {db} and {ttl_days} are filled in by the migrator.

-- One row per trajectory version. The latest version is argMax(..., version) or LIMIT 1 BY.
CREATE TABLE IF NOT EXISTS {db}.trajectories
(
    trajectory_id String,
    version UInt32,
    ended_at DateTime64(3, 'UTC'),
    started_at DateTime64(3, 'UTC'),
    scored_at DateTime64(3, 'UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    environment LowCardinality(String),
    task_key String,
    task String,
    outcome LowCardinality(String),
    reward Float64,
    reward_function LowCardinality(String),
    turn_count UInt32,
    tool_calls UInt32,
    tool_errors UInt32,
    duration_ms UInt64,
    model_version LowCardinality(String),
    parent_trajectory_id String,
    timed_out Bool,
    extractor LowCardinality(String),
    entities Array(String),
    reason LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    INDEX trajectory_id_bf trajectory_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ended_at)
ORDER BY (agent_id, toDate(ended_at), trajectory_id, version)
TTL toDateTime(ended_at) + INTERVAL {ttl_days} DAY;

-- What the per-minute rollups read: +1 for a version, -1 for the version it replaces. A trajectory
-- re-emitted with a new version thus counts once; the sink inserts a pair only if it is not here yet.
CREATE TABLE IF NOT EXISTS {db}.trajectory_deltas
(
    trajectory_id String,
    version UInt32,
    sign Int8,
    ended_at DateTime64(3, 'UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    model_version LowCardinality(String),
    outcome LowCardinality(String),
    reward Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ended_at)
ORDER BY (toDate(ended_at), trajectory_id, version, sign)
TTL toDateTime(ended_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.turns
(
    trajectory_id String,
    turn_index UInt32,
    timestamp DateTime64(3, 'UTC'),
    duration_ms UInt64,
    error Bool,
    error_type LowCardinality(String),
    turn_reward Nullable(Float64),
    model LowCardinality(String),
    model_version LowCardinality(String),
    air Float64,
    message_count UInt16,
    -- the trajectory's attributes, as of the version that first carried this turn
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    task_key String,
    outcome LowCardinality(String),
    reward Float64,
    first_version UInt32
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (agent_id, toDate(timestamp), trajectory_id, turn_index)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.messages
(
    trajectory_id String,
    turn_index UInt32,
    seq UInt16,
    timestamp DateTime64(3, 'UTC'),
    role LowCardinality(String),
    kind LowCardinality(String),
    text String,
    tool_name LowCardinality(String),
    call_id String,
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    task_key String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (agent_id, toDate(timestamp), trajectory_id, turn_index, seq)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.tool_calls
(
    trajectory_id String,
    turn_index UInt32,
    call_id String,
    timestamp DateTime64(3, 'UTC'),
    tool LowCardinality(String),
    arguments String,
    status LowCardinality(String),
    latency_ms Nullable(UInt64),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    model_version LowCardinality(String),
    task_key String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tool, toDate(timestamp), trajectory_id, turn_index, call_id)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.rewards
(
    trajectory_id String,
    version UInt32,
    scored_at DateTime64(3, 'UTC'),
    reward_function LowCardinality(String),
    component LowCardinality(String),
    value Float64,
    weight Float64,
    detail String,
    agent_id LowCardinality(String),
    domain LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(scored_at)
ORDER BY (agent_id, toDate(scored_at), trajectory_id, version, component)
TTL toDateTime(scored_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.credits
(
    trajectory_id String,
    version UInt32,
    scored_at DateTime64(3, 'UTC'),
    method LowCardinality(String),
    step_index UInt32,
    turn_index UInt32,
    credit Float64,
    air Float64,
    agent_id LowCardinality(String),
    domain LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(scored_at)
ORDER BY (agent_id, toDate(scored_at), trajectory_id, version, method, step_index)
TTL toDateTime(scored_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.decisions
(
    trajectory_id String,
    version UInt32,
    extracted_at DateTime64(3, 'UTC'),
    extractor LowCardinality(String),
    prompt_version LowCardinality(String),
    step_index UInt32,
    decision_type LowCardinality(String),
    chosen_action String,
    reasoning String,
    alternatives Array(String),
    confidence Float64,
    implicit Bool,
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    outcome LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(extracted_at)
ORDER BY (agent_id, toDate(extracted_at), trajectory_id, version, prompt_version, step_index)
TTL toDateTime(extracted_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.entities
(
    trajectory_id String,
    version UInt32,
    extracted_at DateTime64(3, 'UTC'),
    extractor LowCardinality(String),
    prompt_version LowCardinality(String),
    name String,
    entity_type LowCardinality(String),
    discovered_at_step UInt32,
    importance LowCardinality(String),
    relationships Array(String),
    agent_id LowCardinality(String),
    domain LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(extracted_at)
ORDER BY (entity_type, toDate(extracted_at), name, trajectory_id, version, prompt_version)
TTL toDateTime(extracted_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    failed_at DateTime64(3, 'UTC'),
    stage LowCardinality(String),
    error_type LowCardinality(String),
    reason String,
    source LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    trajectory_id String,
    payload_bytes UInt32,
    dlq_partition UInt32,
    dlq_offset UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (stage, toDate(failed_at), dlq_partition, dlq_offset)
TTL toDateTime(failed_at) + INTERVAL {ttl_days} DAY;

-- Per-minute rollups. Signed sums, so a replaced version cancels out before anyone reads the sum.
CREATE TABLE IF NOT EXISTS {db}.trajectory_metrics_minute
(
    minute DateTime('UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    model_version LowCardinality(String),
    trajectories Int64,
    successes Int64,
    reward_sum Float64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (agent_id, minute, domain, model_version)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trajectory_metrics_minute_mv TO {db}.trajectory_metrics_minute AS
SELECT
    toStartOfMinute(ended_at) AS minute, agent_id, domain, model_version,
    sum(sign) AS trajectories,
    sum(sign * (outcome = 'success')) AS successes,
    sum(sign * reward) AS reward_sum
FROM {db}.trajectory_deltas
GROUP BY minute, agent_id, domain, model_version;

CREATE TABLE IF NOT EXISTS {db}.tool_metrics_minute
(
    minute DateTime('UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    tool LowCardinality(String),
    model_version LowCardinality(String),
    calls AggregateFunction(count),
    errors AggregateFunction(countIf, UInt8),
    latency AggregateFunction(quantiles(0.5, 0.99), Nullable(UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tool, minute, agent_id, domain, model_version)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.tool_metrics_minute_mv TO {db}.tool_metrics_minute AS
SELECT
    toStartOfMinute(timestamp) AS minute, agent_id, domain, tool, model_version,
    countState() AS calls,
    countIfState(toUInt8(status IN ('error', 'timeout'))) AS errors,
    quantilesState(0.5, 0.99)(latency_ms) AS latency
FROM {db}.tool_calls
GROUP BY minute, agent_id, domain, tool, model_version;
