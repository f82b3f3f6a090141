-- What the web console and the Grafana dashboards read (issue 14). Rows landed before this migration
-- have no tags and no token counts (the defaults say so); the new rollups are filled from the stored
-- rows here, before the sink starts, so they count those rows once.

ALTER TABLE {db}.trajectories ADD COLUMN IF NOT EXISTS tags Array(String) AFTER task;
-- The last tool the trajectory called, and the calls it repeated (same tool, same arguments) 3 times or
-- more, with how often: computed by the sink from the whole trajectory, so no dashboard groups tool calls.
ALTER TABLE {db}.trajectories ADD COLUMN IF NOT EXISTS last_tool LowCardinality(String) AFTER tool_errors;
ALTER TABLE {db}.trajectories ADD COLUMN IF NOT EXISTS loop_tools Array(String) AFTER last_tool;
ALTER TABLE {db}.trajectories ADD COLUMN IF NOT EXISTS loop_repeats Array(UInt32) AFTER loop_tools;
ALTER TABLE {db}.trajectory_deltas ADD COLUMN IF NOT EXISTS last_tool LowCardinality(String) AFTER model_version;
ALTER TABLE {db}.turns ADD COLUMN IF NOT EXISTS input_tokens Nullable(UInt64) AFTER model_version;
ALTER TABLE {db}.turns ADD COLUMN IF NOT EXISTS output_tokens Nullable(UInt64) AFTER input_tokens;

-- Every event of the trainer's model.versions topic (created, deployed, rejected, rolled_back). The topic
-- is compacted to the latest event per model, so the history lives here.
CREATE TABLE IF NOT EXISTS {db}.model_versions
(
    at DateTime64(3, 'UTC'),
    model_name LowCardinality(String),
    version String,
    number UInt32,
    parent String,
    event LowCardinality(String),
    metrics Map(String, Float64),
    reason String,
    canary_share Float64,
    windows UInt32
)
ENGINE = MergeTree
ORDER BY (model_name, at, version, event);

-- Per tool and minute: calls, errors and timeouts apart, and latency p50/p95/p99. Replaces
-- tool_metrics_minute, which counted timeouts as errors and had no p95.
CREATE TABLE IF NOT EXISTS {db}.tool_stats_minute
(
    minute DateTime('UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    tool LowCardinality(String),
    model_version LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    timeouts SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tool, agent_id, domain, model_version)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.tool_stats_minute_mv TO {db}.tool_stats_minute AS
SELECT
    toStartOfMinute(timestamp) AS minute, agent_id, domain, tool, model_version,
    toUInt64(count()) AS calls,
    toUInt64(countIf(status = 'error')) AS errors,
    toUInt64(countIf(status = 'timeout')) AS timeouts,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency
FROM {db}.tool_calls
GROUP BY minute, agent_id, domain, tool, model_version;

INSERT INTO {db}.tool_stats_minute
SELECT
    toStartOfMinute(timestamp) AS minute, agent_id, domain, tool, model_version,
    toUInt64(count()), toUInt64(countIf(status = 'error')), toUInt64(countIf(status = 'timeout')),
    quantilesState(0.5, 0.95, 0.99)(latency_ms)
FROM {db}.tool_calls
GROUP BY minute, agent_id, domain, tool, model_version;

DROP VIEW IF EXISTS {db}.tool_metrics_minute_mv;
DROP TABLE IF EXISTS {db}.tool_metrics_minute;

-- Per model, version and minute: turns, failed turns, tokens in and out, and turn latency p50/p95/p99.
CREATE TABLE IF NOT EXISTS {db}.model_metrics_minute
(
    minute DateTime('UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    turns SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, model, model_version, agent_id, domain)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.model_metrics_minute_mv TO {db}.model_metrics_minute AS
SELECT
    toStartOfMinute(timestamp) AS minute, agent_id, domain, model, model_version,
    toUInt64(count()) AS turns,
    toUInt64(countIf(error)) AS errors,
    toUInt64(sum(ifNull(input_tokens, 0))) AS input_tokens,
    toUInt64(sum(ifNull(output_tokens, 0))) AS output_tokens,
    quantilesState(0.5, 0.95, 0.99)(duration_ms) AS latency
FROM {db}.turns
GROUP BY minute, agent_id, domain, model, model_version;

INSERT INTO {db}.model_metrics_minute
SELECT
    toStartOfMinute(timestamp) AS minute, agent_id, domain, model, model_version,
    toUInt64(count()), toUInt64(countIf(error)), toUInt64(sum(ifNull(input_tokens, 0))),
    toUInt64(sum(ifNull(output_tokens, 0))), quantilesState(0.5, 0.95, 0.99)(duration_ms)
FROM {db}.turns
GROUP BY minute, agent_id, domain, model, model_version;

-- Per last tool called and minute: trajectories and failures (signed, like trajectory_metrics_minute, so a
-- replaced version cancels out): the tools that most often precede failure.
CREATE TABLE IF NOT EXISTS {db}.last_tool_minute
(
    minute DateTime('UTC'),
    agent_id LowCardinality(String),
    domain LowCardinality(String),
    model_version LowCardinality(String),
    last_tool LowCardinality(String),
    trajectories Int64,
    failures Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, last_tool, agent_id, domain, model_version)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.last_tool_minute_mv TO {db}.last_tool_minute AS
SELECT
    toStartOfMinute(ended_at) AS minute, agent_id, domain, model_version, last_tool,
    sum(sign) AS trajectories,
    sum(sign * (outcome IN ('failure', 'error'))) AS failures
FROM {db}.trajectory_deltas
GROUP BY minute, agent_id, domain, model_version, last_tool;

-- tool_stats_minute at hour resolution, per tool only: what the console's Tools page reads for ranges of
-- 2 hours to 3 days. Fewer, larger latency states: merging many small quantile states
-- costs more than the rows they hold (benchmarks/dashboard.py: 2.4 s over 30 days from the minute table).
CREATE TABLE IF NOT EXISTS {db}.tool_stats_hour
(
    hour DateTime('UTC'),
    tool LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    timeouts SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, tool)
TTL hour + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.tool_stats_hour_mv TO {db}.tool_stats_hour AS
SELECT
    toStartOfHour(timestamp) AS hour, tool,
    toUInt64(count()) AS calls,
    toUInt64(countIf(status = 'error')) AS errors,
    toUInt64(countIf(status = 'timeout')) AS timeouts,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency
FROM {db}.tool_calls
GROUP BY hour, tool;

INSERT INTO {db}.tool_stats_hour
SELECT toStartOfHour(timestamp) AS hour, tool, toUInt64(count()), toUInt64(countIf(status = 'error')),
    toUInt64(countIf(status = 'timeout')), quantilesState(0.5, 0.95, 0.99)(latency_ms)
FROM {db}.tool_calls
GROUP BY hour, tool;

-- model_metrics_minute at hour resolution, per model and version only (the Models page, as above).
CREATE TABLE IF NOT EXISTS {db}.model_metrics_hour
(
    hour DateTime('UTC'),
    model LowCardinality(String),
    model_version LowCardinality(String),
    turns SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, model, model_version)
TTL hour + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.model_metrics_hour_mv TO {db}.model_metrics_hour AS
SELECT
    toStartOfHour(timestamp) AS hour, model, model_version,
    toUInt64(count()) AS turns,
    toUInt64(countIf(error)) AS errors,
    toUInt64(sum(ifNull(input_tokens, 0))) AS input_tokens,
    toUInt64(sum(ifNull(output_tokens, 0))) AS output_tokens,
    quantilesState(0.5, 0.95, 0.99)(duration_ms) AS latency
FROM {db}.turns
GROUP BY hour, model, model_version;

INSERT INTO {db}.model_metrics_hour
SELECT toStartOfHour(timestamp) AS hour, model, model_version, toUInt64(count()), toUInt64(countIf(error)),
    toUInt64(sum(ifNull(input_tokens, 0))), toUInt64(sum(ifNull(output_tokens, 0))),
    quantilesState(0.5, 0.95, 0.99)(duration_ms)
FROM {db}.turns
GROUP BY hour, model, model_version;

-- tool_stats_minute at day resolution, per tool only: what the console's Tools page reads for ranges of
-- 3 days or more. Fewer, larger latency states: merging many small quantile states
-- costs more than the rows they hold (benchmarks/dashboard.py: 2.4 s over 30 days from the minute table).
CREATE TABLE IF NOT EXISTS {db}.tool_stats_day
(
    day DateTime('UTC'),
    tool LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    timeouts SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, tool)
TTL day + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.tool_stats_day_mv TO {db}.tool_stats_day AS
SELECT
    toStartOfDay(timestamp) AS day, tool,
    toUInt64(count()) AS calls,
    toUInt64(countIf(status = 'error')) AS errors,
    toUInt64(countIf(status = 'timeout')) AS timeouts,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency
FROM {db}.tool_calls
GROUP BY day, tool;

INSERT INTO {db}.tool_stats_day
SELECT toStartOfDay(timestamp) AS day, tool, toUInt64(count()), toUInt64(countIf(status = 'error')),
    toUInt64(countIf(status = 'timeout')), quantilesState(0.5, 0.95, 0.99)(latency_ms)
FROM {db}.tool_calls
GROUP BY day, tool;

-- model_metrics_minute at day resolution, per model and version only (the Models page, as above).
CREATE TABLE IF NOT EXISTS {db}.model_metrics_day
(
    day DateTime('UTC'),
    model LowCardinality(String),
    model_version LowCardinality(String),
    turns SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, model, model_version)
TTL day + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.model_metrics_day_mv TO {db}.model_metrics_day AS
SELECT
    toStartOfDay(timestamp) AS day, model, model_version,
    toUInt64(count()) AS turns,
    toUInt64(countIf(error)) AS errors,
    toUInt64(sum(ifNull(input_tokens, 0))) AS input_tokens,
    toUInt64(sum(ifNull(output_tokens, 0))) AS output_tokens,
    quantilesState(0.5, 0.95, 0.99)(duration_ms) AS latency
FROM {db}.turns
GROUP BY day, model, model_version;

INSERT INTO {db}.model_metrics_day
SELECT toStartOfDay(timestamp) AS day, model, model_version, toUInt64(count()), toUInt64(countIf(error)),
    toUInt64(sum(ifNull(input_tokens, 0))), toUInt64(sum(ifNull(output_tokens, 0))),
    quantilesState(0.5, 0.95, 0.99)(duration_ms)
FROM {db}.turns
GROUP BY day, model, model_version;
