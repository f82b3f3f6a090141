"""The Faust app: the assembly and scoring agents, their changelog-backed tables, the inactivity and
retention sweeps.

Both agents are batch agents: the app's consumer (``streams.ordered_consumer``) hands each fetched batch
of their topics to them in offset order, one batch at a time (concurrency 1, as faust-streaming loses
messages with more), and acks the batch when the agent returns. Faust still owns the group, the
tables and their changelogs, recovery and commits. Every topic the app reads or writes, changelogs
included, is created beforehand by ``trajstream topics create``: the app is not allowed to declare topics.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from trajstream.assembled import TrajectoryView
from trajstream.parts import mark_ready
from trajstream.settings import Settings
from trajstream.streams.assembly import Assembler, Input, Result
from trajstream.streams.ordered_consumer import BatchHandler, OrderedTransport
from trajstream.streams.scoring.stage import Judge, Scorer
from trajstream.streams.trace_stage import Pending, TraceStage
from trajstream.topics import (
    ASSEMBLED,
    ASSEMBLY_CONTROL_TOPIC,
    ASSEMBLY_TABLE,
    ENRICHMENT_RESULTS,
    EVENTS_TOPIC,
    FEEDBACK_TOPIC,
    OTLP_SPANS_TOPIC,
    OTLP_TABLE,
    SCORING_CONTROL_TOPIC,
    SCORING_TABLE,
    faust_app_id,
)
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.kafka_security import start_client

log = logging.getLogger(__name__)


@dataclass
class IdleTrajectories:
    """Open trajectories and their last activity, for the inactivity sweep (per process, not persisted)."""

    last_activity: dict[str, int] = field(default_factory=dict)
    # Closed trajectories, for the retention sweep: partition, and (quiet since, last_activity_ms) as
    # Assembler.closed_since.
    closed: dict[str, tuple[int | None, int, int]] = field(default_factory=dict)
    scanned: bool = False  # the restored table has been read once since start
    traces_scanned: bool = False  # likewise for the trace stage's table


class _App(faust.App):
    """A Faust app whose consumer never skips offsets and hands some topics' records over in batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> Any:
        return OrderedTransport(self.conf.broker_consumer, self)

    def batch_agent(self, topic: faust.types.TopicT, handler: BatchHandler) -> None:
        """Subscribe to ``topic`` and give its records to ``handler`` a fetched batch at a time."""
        self.topics.add(topic)  # the conductor subscribes the consumer to it
        for name in topic.topics:
            self.batch_handlers[name] = handler


def _broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{hp.strip()}" for hp in settings.bootstrap.split(","))


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    opts = settings.kafka_client_options()
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=opts["sasl_plain_username"],
            password=opts["sasl_plain_password"],
            mechanism=opts["sasl_mechanism"],
            ssl_context=opts.get("ssl_context"),
        )
    return faust.SSLCredentials(opts["ssl_context"])


def make_judge(settings: Settings) -> Judge | None:
    """The RULER-style group judge, when an LLM is configured."""
    if not settings.llm_configured:
        return None
    from trajstream.streams.enrichment.llm import build_client
    from trajstream.streams.scoring.rewards import judge_group

    client = build_client(settings)
    model = settings.judge_model or settings.llm_model

    async def judge(views: Sequence[TrajectoryView]) -> list[tuple[float, str]]:
        verdicts = await judge_group(list(views), client, model)
        return [(v.score, v.rationale) for v in verdicts]

    return judge


# Big fetches: the batch agent's cost is per batch as much as per record. benchmarks/streams.py reads its
# baseline with the same settings.
MAX_POLL_RECORDS = 10_000
FETCH_MAX_WAIT_MS = 1500  # what Faust's aiokafka driver sets


def fetch_bytes(settings: Settings) -> int:
    """Bytes per partition per fetch: 8 MiB, and never less than the largest record (Limits)."""
    return max(8 * 1024 * 1024, settings.limits.message_bytes)


def create_app(settings: Settings, codec: EventCodec | None = None) -> tuple[faust.App, IdleTrajectories]:
    codec = codec or codec_for(settings)
    idle = IdleTrajectories()
    app = _App(
        faust_app_id(settings),
        broker=_broker_url(settings),
        broker_credentials=_credentials(settings),
        store="memory://",  # state is rebuilt from the changelog topics at start
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        datadir=str(settings.home.resolve() / "streams"),
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_max_fetch_size=fetch_bytes(settings),
        broker_max_poll_records=MAX_POLL_RECORDS,
        producer_linger=0.005,
        producer_max_batch_size=1024 * 1024,
        # Outputs and changelog records up to the largest record a topic takes (a trajectory's, Limits).
        producer_max_request_size=settings.limits.message_bytes,
        stream_wait_empty=True,  # False lets a rebalance drop buffered events Faust then commits past
        broker_commit_every=1000,
        # A SIGKILLed worker's partitions wait for its session to expire before a restart gets them.
        broker_session_timeout=settings.streams_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.streams_session_timeout_s / 4),
        broker_commit_interval=1.0,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    assembly_source = app.topic(
        settings.topic(EVENTS_TOPIC), settings.topic(FEEDBACK_TOPIC), settings.topic(ASSEMBLY_CONTROL_TOPIC), **raw
    )
    # scoring.control: the assembly agent's expire, forwarded so that scoring's agent slims its own state.
    scoring_source = app.topic(
        settings.topic(ASSEMBLED), settings.topic(ENRICHMENT_RESULTS), settings.topic(SCORING_CONTROL_TOPIC), **raw
    )
    trace_source = app.topic(settings.topic(OTLP_SPANS_TOPIC), **raw)
    table_opts: dict[str, Any] = {"default": None, "partitions": settings.topic_partitions, "key_type": bytes,
                                  "value_type": bytes}  # fmt: skip
    assembly_table = app.Table(ASSEMBLY_TABLE, **table_opts)
    scoring_table = app.Table(SCORING_TABLE, **table_opts)
    trace_table = app.Table(OTLP_TABLE, **table_opts)
    out_topics: dict[str, faust.types.TopicT] = {}

    def out(name: str) -> faust.types.TopicT:
        if name not in out_topics:
            out_topics[name] = app.topic(name, **raw)
        return out_topics[name]

    assembler = Assembler(settings, codec)
    scorer = Scorer(settings, codec, make_judge(settings))
    traces = TraceStage(settings, codec)
    pending_traces: dict[str, Pending] = {}  # traces with spans not yet all published, for the sweep

    async def fold_batch(
        messages: list[faust.types.Message],
        table: Any,
        handle: Callable[[Input, Any], Result | Awaitable[Result]],
        dump: Callable[[Any], bytes],
    ) -> dict[bytes, tuple[int, Any]]:
        """Fold a fetched batch into a table: each key's state is written once per batch.

        Writing the whole state after every event made the assembly changelog about 6 times its input
        and bounded the worker at about 2,000 events/s; Faust's per-event stream path cost as much again,
        and its stream buffers are where records went missing around a rebalance. Outputs and changelog
        records are in the producer before the batch is acked, and Faust flushes the producer before it
        commits, so a crash replays the batch, which both stages treat as a replay.


        A state the handler expires is removed, and its changelog gets a tombstone (a null value), which
        compaction turns into the key's removal: a worker restored from the changelog does not see it.
        The folded states are returned with their partitions, None for a removed one.
        """
        states: dict[bytes, tuple[int, Any]] = {}
        producer = app.producer
        for m in messages:
            key = m.key or b""
            record = Input(m.topic, m.partition, m.offset, m.key, m.value or b"", int(m.timestamp * 1000))
            current = states[key][1] if key in states else (table.get(key) if key else None)
            outcome = handle(record, current)
            result = await outcome if inspect.isawaitable(outcome) else outcome
            if result.expired and key:
                states[key] = (m.partition, None)
            elif result.state is not None and key:
                states[key] = (m.partition, result.state)
            for o in result.outputs:
                await producer.send(o.topic, o.key, o.value, None, None, None)
        for key, (partition, state) in states.items():
            data = None if state is None else dump(state)
            if data is None:
                table.data.pop(key, None)
            else:
                table.data[key] = data
            table.send_changelog(partition, key, data)
        return states

    def assemble_one(record: Input, current: Any) -> Result:
        if current is None and record.key:
            current = resumed(record.key)
        return assembler.handle(record, current)

    def resumed(key: bytes) -> Any:
        """A trajectory the retention sweep removed goes on from the last version scoring saw, if any.

        Scoring's table is keyed and partitioned like assembly's (Faust assigns the partitions of topics
        that have as many partitions together), and a swept trajectory closed a retention ago, so its
        versions have long reached scoring. A trajectory scoring never saw is simply new. The sweep slims
        scoring's state too, but keeps the version counts read here.
        """
        seen = scoring_table.get(key)
        if seen is None:
            return None
        scored = scorer.load(seen, key.decode(errors="replace"))
        version = max(scored["assembled_version"], scored["scored_version"])
        if not version:
            return None
        if scored["emitted"]:
            # Not swept: the sweep slims scoring's state (its outputs go) before anything could come after it.
            # No assembly state with scoring's outputs still kept is a crash between the two changelogs: the
            # scored version's assembly write was lost, and replaying its events rebuilds it as it was. (The
            # chaos mix found this: going on from scoring's version made new, partial versions of 38
            # trajectories after a SIGKILL.)
            return None
        # Rare by design (a retention after the close): a burst of these says the sweep's inference is wrong.
        log.warning("trajectory %s: no assembly state but scored version %d: going on from it (swept)",
                    key.decode(errors="replace"), version)  # fmt: skip
        return assembler.resumed_state(key.decode(errors="replace"), version)

    async def assemble(messages: list[faust.types.Message]) -> None:
        folded = await fold_batch(messages, assembly_table, assemble_one, assembler.dump)
        removed = [key.decode(errors="replace") for key, (_, state) in folded.items() if state is None]
        for key, (partition, state) in folded.items():
            track_idle(key, state, partition)
        if removed:
            log.info("retention sweep: removed %d closed trajectories from the assembly table (%s%s); %d left",
                     len(removed), ", ".join(removed[:5]), ", ..." if len(removed) > 5 else "",
                     len(assembly_table.data))  # fmt: skip

    async def score(messages: list[faust.types.Message]) -> None:
        await fold_batch(messages, scoring_table, scorer.handle, scorer.dump)

    async def trace(messages: list[faust.types.Message]) -> None:
        folded = await fold_batch(messages, trace_table, traces.handle, traces.dump)
        for key, (_, state) in folded.items():
            track_trace(key, state)

    def track_trace(key: bytes, state: Any) -> None:
        pending = traces.pending(traces.load(state, key.decode(errors="replace"), 0))
        if pending.holds_spans:
            pending_traces[key.decode(errors="replace")] = pending
        else:
            pending_traces.pop(key.decode(errors="replace"), None)

    app.batch_agent(assembly_source, assemble)
    app.batch_agent(scoring_source, score)
    app.batch_agent(trace_source, trace)

    @app.timer(0.5)  # type: ignore[untyped-decorator]
    async def sweep_traces() -> None:
        """Ask the trace stage to publish trajectories whose grace is over, and idle traces whole."""
        if not idle.traces_scanned:
            scan_restored(trace_table, track_trace)
            idle.traces_scanned = True
        now_ms = int(time.time() * 1000)
        idle_ms = int(settings.assembly_inactivity_timeout_s * 1000)
        for trace_id, pending in list(pending_traces.items()):
            is_idle = now_ms - pending.last_seen_ms >= idle_ms
            if is_idle or (pending.flush_due_ms is not None and pending.flush_due_ms <= now_ms):
                message = traces.flush_message(trace_id, now_ms, idle=is_idle)
                await out(message.topic).send(key=message.key, value=message.value)
                pending_traces.pop(trace_id, None)  # asked once; the answer's state puts it back if need be

    def scan_restored(table: Any, track: Callable[[bytes, Any], None]) -> None:
        """After a start, what the sweeps watch (open trajectories, traces awaiting publication) is only in
        the restored table: read it once."""
        for key, value in list(table.items()):
            if value is not None:
                track(key, value)

    def track_restored(key: bytes, state: Any) -> None:
        # Faust's memory store notes each restored key's changelog partition; it has no public reader.
        track_idle(key, state, getattr(assembly_table.data, "_key_partition", {}).get(key))

    def track_idle(key: bytes, state: Any, partition: int | None) -> None:
        """Note an open trajectory for the inactivity sweep, a closed one for the retention sweep."""
        tid = key.decode(errors="replace")
        since = None if state is None else assembler.idle_since(state)
        if since is None:
            idle.last_activity.pop(tid, None)
        else:
            idle.last_activity[tid] = since[1]
        closed = None if state is None else assembler.closed_since(state)
        if closed is None:
            idle.closed.pop(tid, None)
        else:
            idle.closed[tid] = (partition, *closed)

    @app.timer(settings.assembly_sweep_interval_s)  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        """Ask the agent to close idle trajectories. The agent decides: it owns the state."""
        if not idle.scanned:
            scan_restored(assembly_table, track_restored)
            idle.scanned = True
        now_ms = int(time.time() * 1000)
        timeout_ms = int(settings.assembly_inactivity_timeout_s * 1000)
        for tid, last in list(idle.last_activity.items()):
            if now_ms - last >= timeout_ms:
                message = assembler.timeout_message(tid, last, now_ms)
                await out(message.topic).send(key=message.key, value=message.value)
                idle.last_activity.pop(tid, None)  # asked once; a new event puts it back
        await expire(now_ms)

    async def expire(now_ms: int) -> None:
        """Ask the agent to remove closed trajectories quiet for the retention; it removes them if nothing
        came since. The message goes to the trajectory's own partition, whose agent alone changes its state;
        only the partitions this worker owns now are swept (a restored table may hold standby partitions,
        and a rebalance moves partitions away: their new owner sweeps them)."""
        retention_ms = int(settings.assembly_retention_s * 1000)
        events = settings.topic(EVENTS_TOPIC)
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == events}
        if not owned:
            return  # not assigned yet, or in a rebalance: nothing is known to be this worker's
        for tid, (partition, since, last) in list(idle.closed.items()):
            if partition is not None and partition not in owned:
                idle.closed.pop(tid, None)
            elif now_ms - since >= retention_ms:
                # Forgotten before the send yields: an event folded meanwhile tracks the trajectory again.
                idle.closed.pop(tid, None)
                message = assembler.expire_message(tid, last, now_ms)
                await out(message.topic).send(key=message.key, value=message.value)

    return app, idle


async def check_connection(settings: Settings) -> None:
    """Connect once as the worker's clients will; a security problem is raised as a KafkaSecurityError."""
    from aiokafka.admin import AIOKafkaAdminClient

    options = settings.kafka_client_options()
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=30_000)
    try:
        await start_client(admin, options)
    finally:
        await admin.close()


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run the streams worker in the foreground until SIGTERM or SIGINT."""
    # Faust creates its data directory but not its parents: with an external cluster nothing else may have
    # made TRAJSTREAM_HOME yet (a fresh checkout failed with FileNotFoundError).
    (settings.home / "streams").mkdir(parents=True, exist_ok=True)
    # Faust retries a refused connection without end and logs its cause deep in a traceback: a wrong password
    # or an untrusted certificate is found here first, as an error naming the setting to fix.
    asyncio.run(check_connection(settings))
    app, _ = create_app(settings)
    # A worker holds few reference cycles but allocates a container per record, so the default
    # thresholds ran a collection every few hundred records: 8% of the assembly rate. Objects alive
    # after start (modules, the app) are frozen out of the collections altogether.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    started = worker.on_startup_finished

    async def on_startup_finished() -> None:
        await started()
        mark_ready(settings, "streams")  # `trajstream up` waits for this process's mark

    # Faust hands the worker's hook to the app when the worker starts: replaced before that.
    worker.on_startup_finished = on_startup_finished  # type: ignore[method-assign]
    worker.execute_from_commandline()
