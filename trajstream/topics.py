"""Every topic the platform uses, and their idempotent creation (broker auto-creation is off)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from trajstream.errors import ConfigurationError
from trajstream.settings import Settings
from trajstream_sdk import config as sdk_config
from trajstream_sdk.kafka_security import start_client


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    compacted: bool = False
    dead_letters: bool = False
    # Stages whose output is keyed state (latest version per key) keep everything, compacted.


# Start, turn and end events of one trajectory share one topic (keyed by trajectory id) so that
# they land on one partition and are read in the order the agent wrote them; the reader tells the
# record types apart by their schema fingerprint.
EVENTS_TOPIC = sdk_config.EVENTS_TOPIC  # the emitter's two topics are named by the SDK
FEEDBACK_TOPIC = sdk_config.FEEDBACK_TOPIC
DEAD_LETTER_TOPIC = "deadletter"
ASSEMBLED = "trajectories.assembled"
ENRICHMENT_REQUESTS = "enrichment.requests"
ENRICHMENT_RESULTS = "enrichment.results"
REWARDS = "rewards"
SCORED = "trajectories.scored"
MODEL_VERSIONS = "model.versions"
ASSEMBLY_CONTROL_TOPIC = "assembly.control"
SCORING_CONTROL_TOPIC = "scoring.control"
OTLP_SPANS_TOPIC = "otlp.spans"

# Consumer groups (after the prefix, Settings.consumer_group): the Faust app id is the streams group,
# and Faust names a table's changelog "<app id>-<table>-changelog".
STREAMS_APP = "streams"
ENRICHMENT_GROUP = "enrichment"
CLICKHOUSE_SINK_GROUP = "sink-clickhouse"
# Two Milvus sinks read the scored topic, each in its own group, so Kafka's lag of each is its own backlog:
# trajectory vectors (the group keeps the name of the one Milvus sink before the split, so an existing
# pipeline does not embed its trajectories again) and decision points.
MILVUS_TRAJECTORY_GROUP = "sink-milvus"
MILVUS_DECISION_GROUP = "sink-milvus-decisions"


def trainer_group(model_name: str) -> str:
    """The trainer of each model line reads the scored trajectories in its own group."""
    return f"trainer-{model_name}"


ASSEMBLY_TABLE = "assembly"
SCORING_TABLE = "scoring"
OTLP_TABLE = "otlp"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(EVENTS_TOPIC, "Agent events: trajectory start, turns and end, keyed by trajectory id."),
    TopicSpec(FEEDBACK_TOPIC, "Late rewards and reviews for finished trajectories, keyed by trajectory id."),
    TopicSpec(
        DEAD_LETTER_TOPIC, "Input any stage rejected, with the original bytes and the reason.", dead_letters=True
    ),
    TopicSpec(ASSEMBLED, "Complete trajectories, latest version per trajectory id.", compacted=True),
    TopicSpec(ENRICHMENT_REQUESTS, "Finished trajectories waiting for decision and entity extraction."),
    TopicSpec(ENRICHMENT_RESULTS, "Extracted decisions and entities per trajectory.", compacted=True),
    TopicSpec(REWARDS, "AIR turn rewards and per-step credit assignments."),
    TopicSpec(SCORED, "Scored trajectories, the trainer's input.", compacted=True),
    TopicSpec(MODEL_VERSIONS, "Model versions published by the trainer, keyed by model name.", compacted=True),
    TopicSpec(ASSEMBLY_CONTROL_TOPIC, "Timeouts and sub-agent links the assembly stage sends itself."),
    TopicSpec(SCORING_CONTROL_TOPIC, "Swept trajectories the assembly stage tells scoring of, to slim their state."),
    TopicSpec(OTLP_SPANS_TOPIC, "OTLP spans from the gateway, keyed by trace id, and the trace stage's flushes."),
)


def faust_app_id(settings: Settings) -> str:
    return settings.consumer_group(STREAMS_APP)


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{faust_app_id(settings)}-{table}-changelog"


def internal_topics(settings: Settings) -> tuple[TopicSpec, ...]:
    """Faust's changelog topics: created here because Faust is not allowed to create topics."""
    return tuple(
        TopicSpec(changelog_topic(settings, table)[len(settings.topic_prefix) :], f"Changelog of the {table} table.",
                  compacted=True)
        for table in (ASSEMBLY_TABLE, SCORING_TABLE, OTLP_TABLE)
    )  # fmt: skip


def topic_config(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    retention = settings.dlq_retention_ms if spec.dead_letters else settings.topic_retention_ms
    config = {
        "min.insync.replicas": str(min(settings.topic_min_insync_replicas, settings.topic_replication)),
        "retention.ms": str(-1 if spec.compacted else retention),
        "cleanup.policy": "compact" if spec.compacted else "delete",
        # Every topic takes the largest record, set on the topic itself: an external cluster's broker
        # default (1 MiB) would refuse an event of TRAJSTREAM_MAX_EVENT_BYTES, a dead letter or a trajectory.
        "max.message.bytes": str(settings.limits.message_bytes),
    }
    return config


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    partitions: int
    config: dict[str, str]


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float) -> dict[str, int]:
    """Return partition counts once every partition has a leader: until then, the first produce
    requests fail with NOT_LEADER and the first consumers see no offsets."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        pending = [
            f"{d['topic']}[{p['partition']}]"
            for d in described
            for p in d["partitions"]
            if p["error_code"] != 0 or p["leader"] < 0
        ] + [d["topic"] for d in described if d["error_code"] != 0]
        if not pending:
            return {d["topic"]: len(d["partitions"]) for d in described}
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigurationError(f"topics have no leader after {timeout_s:.0f}s: {', '.join(pending[:10])}")
        await asyncio.sleep(0.1)


async def create_topics(settings: Settings, specs: tuple[TopicSpec, ...] | None = None) -> list[TopicResult]:
    """Create every topic that does not exist yet; existing topics are left as they are and reported."""
    if specs is None:
        specs = TOPICS + internal_topics(settings)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=30_000)
    await start_client(admin, settings.kafka_client_options())
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        if settings.topic_replication > brokers:
            raise ConfigurationError(
                f"TRAJSTREAM_TOPIC_REPLICATION={settings.topic_replication} but the cluster has {brokers} broker(s)"
            )
        existing = set(await admin.list_topics())
        results: list[TopicResult] = []
        to_create: list[NewTopic] = []
        for spec in specs:
            name = settings.topic(spec.name)
            config = topic_config(spec, settings)
            results.append(TopicResult(name, name not in existing, settings.topic_partitions, config))
            if name not in existing:
                to_create.append(
                    NewTopic(name, settings.topic_partitions, settings.topic_replication, topic_configs=config)
                )
        if to_create:
            response = await admin.create_topics(to_create)
            failed = [
                f"{t[0]}: error {t[1]} {t[2] if len(t) > 2 else ''}".strip()
                for t in response.topic_errors
                if t[1] not in (0, TopicAlreadyExistsError.errno)
            ]
            if failed:
                raise ConfigurationError("could not create topics: " + "; ".join(failed))
        # Report what is actually there, not what we asked for: an older topic may differ.
        partitions = await _wait_for_leaders(admin, [r.name for r in results], timeout_s=30.0)
        return [TopicResult(r.name, r.created, partitions.get(r.name, r.partitions), r.config) for r in results]
    finally:
        await admin.close()
