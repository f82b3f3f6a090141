"""Each component's Kafka access: the topics it reads and writes and the consumer groups it joins, worked out
from trajstream/parts.py, trajstream/topics.py and the code that produces (each stage's ``settings.topic(...)``
outputs). Everything else is refused by the StandardAuthorizer (allow.everyone.if.no.acl.found=false)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from trajstream.parts import PARTS
from trajstream.settings import Settings
from trajstream.topics import (
    ASSEMBLED,
    ASSEMBLY_CONTROL_TOPIC,
    CLICKHOUSE_SINK_GROUP,
    DEAD_LETTER_TOPIC,
    ENRICHMENT_GROUP,
    ENRICHMENT_REQUESTS,
    ENRICHMENT_RESULTS,
    EVENTS_TOPIC,
    FEEDBACK_TOPIC,
    MILVUS_DECISION_GROUP,
    MILVUS_TRAJECTORY_GROUP,
    MODEL_VERSIONS,
    OTLP_SPANS_TOPIC,
    REWARDS,
    SCORED,
    SCORING_CONTROL_TOPIC,
    STREAMS_APP,
    trainer_group,
)


@dataclass(frozen=True)
class Access:
    read: tuple[str, ...] = ()  # topics (after the prefix)
    write: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # consumer groups (after the prefix)
    prefixed: tuple[tuple[str, str, str], ...] = ()  # (resource type, name prefix after the topic prefix, operation)


def _reads(part: str) -> tuple[str, ...]:
    return next(p.topics for p in PARTS if p.name == part)


ACCESS: dict[str, Access] = {
    # The SDK's emitter: events and feedback, nothing else.
    "sdk": Access(write=(EVENTS_TOPIC, FEEDBACK_TOPIC)),
    # The Faust worker: the trace stage writes events and its own span flushes, assembly its outputs and control
    # records, scoring the scored trajectories and rewards; its tables' changelogs are "<prefix>streams-...".
    "streams": Access(
        read=_reads("streams"),
        write=(
            EVENTS_TOPIC,
            OTLP_SPANS_TOPIC,
            ASSEMBLED,
            ENRICHMENT_REQUESTS,
            ASSEMBLY_CONTROL_TOPIC,
            SCORING_CONTROL_TOPIC,
            SCORED,
            REWARDS,
            DEAD_LETTER_TOPIC,
        ),
        groups=(STREAMS_APP,),
        prefixed=(("TOPIC", f"{STREAMS_APP}-", "READ"), ("TOPIC", f"{STREAMS_APP}-", "WRITE")),
    ),
    "enrich": Access(read=_reads("enrich"), write=(ENRICHMENT_RESULTS, DEAD_LETTER_TOPIC), groups=(ENRICHMENT_GROUP,)),
    # The data worker's sinks, and its console's pipeline view (the ends of the events topic).
    "data": Access(
        read=(*_reads("data"), EVENTS_TOPIC),
        write=(DEAD_LETTER_TOPIC,),
        groups=(CLICKHOUSE_SINK_GROUP, MILVUS_TRAJECTORY_GROUP, MILVUS_DECISION_GROUP),
    ),
    # The trainer reads scored trajectories in its model line's group and announces versions (serve reads them).
    "trainer": Access(
        read=(SCORED, MODEL_VERSIONS),
        write=(MODEL_VERSIONS, DEAD_LETTER_TOPIC),
        prefixed=(("GROUP", trainer_group(""), "READ"),),
    ),
    "gateway": Access(write=(EVENTS_TOPIC, FEEDBACK_TOPIC, OTLP_SPANS_TOPIC, DEAD_LETTER_TOPIC)),
    # The operator's CLI: creates and describes every topic, reads every group's offsets (`status`), reads the
    # dead letters (`dlq list`) and writes what an operator sends (`emit`, `enrich`; `dlq replay` to a source).
    "cli": Access(
        read=(DEAD_LETTER_TOPIC, ASSEMBLED),
        write=(EVENTS_TOPIC, FEEDBACK_TOPIC, ENRICHMENT_REQUESTS),
        prefixed=(
            ("TOPIC", "", "CREATE"),
            ("TOPIC", "", "DESCRIBE"),
            ("TOPIC", "", "DESCRIBE_CONFIGS"),
            ("GROUP", "", "DESCRIBE"),
        ),
    ),
}


def acl_lines(settings: Settings) -> Iterator[str]:
    """Every component's ACLs, in CreateAcls.java's line format (literal names carry the topic prefix)."""
    p = settings.topic_prefix
    for user, access in ACCESS.items():
        principal = f"User:{user}"
        for topic in access.read:
            yield f"{principal} TOPIC LITERAL {p}{topic} READ"
        for topic in access.write:
            yield f"{principal} TOPIC LITERAL {p}{topic} WRITE"
        for group in access.groups:
            yield f"{principal} GROUP LITERAL {p}{group} READ"
        for kind, name, operation in access.prefixed:
            yield f"{principal} {kind} PREFIXED {p}{name} {operation}"
