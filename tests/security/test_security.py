"""Security against a real SASL_SSL broker (issue 17, part 6): every component connects with the project's
settings and its own SCRAM user, the ACLs refuse what is outside each one's topics, a wrong password and an
untrusted certificate fail with an error naming the setting, and no secret shows up anywhere."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from aiokafka.errors import TopicAuthorizationFailedError
from click.testing import CliRunner

from tests.security.certs import key_material
from tests.security.secure_broker import SecureCluster
from tests.support.env import trajstream_bin
from tests.support.gateway import running_gateway
from tests.support.samples import sample_records
from tests.support.streams import read, running_enricher, running_worker, wait_for
from trajstream.errors import KafkaAuthenticationError, KafkaAuthorizationError, KafkaCertificateError
from trajstream.settings import PROJECT_ROOT, Settings
from trajstream.sink import BatchSink, Output, Record, Written
from trajstream.topics import (
    CLICKHOUSE_SINK_GROUP,
    ENRICHMENT_GROUP,
    ENRICHMENT_REQUESTS,
    MODEL_VERSIONS,
    REWARDS,
    SCORED,
    trainer_group,
)
from trajstream_sdk.codec import codec_for
from trajstream_sdk.config import EmitterConfig
from trajstream_sdk.emitter import AsyncEmitter

pytestmark = pytest.mark.integration

# Everything the components printed, logged or raised, for the secrets scan at the end of the module.
TRANSCRIPT: list[str] = []


@pytest.fixture
def cluster(secure_cluster: SecureCluster) -> SecureCluster:
    return secure_cluster


def _emitter_config(cluster: SecureCluster, user: str, **update: Any) -> EmitterConfig:
    s = cluster.settings_for(user, Path("."))
    fields: dict[str, Any] = {
        "kafka_bootstrap": s.bootstrap, "topic_prefix": s.topic_prefix, "security_protocol": "SASL_SSL",
        "sasl_mechanism": s.sasl_mechanism, "sasl_username": user, "sasl_password": cluster.passwords[user],
        "ssl_cafile": cluster.certs.ca, **update,
    }  # fmt: skip
    return EmitterConfig(**fields)


def _cli(cluster: SecureCluster, user: str, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(trajstream_bin()), *args], env=cluster.env_for(user, home, **env),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    TRANSCRIPT.extend((result.stdout, result.stderr))
    return result


class _Probe(BatchSink):
    """The platform's consume → write → commit loop with nothing of its own: it collects what it reads and
    produces what the test asks, through BatchSink's own clients."""

    stage = "probe"

    def __init__(self, settings: Settings, group: str, topics: tuple[str, ...], produce: list[Output]):
        super().__init__(settings, codec_for(settings), group=group,
                         topics=topics, batch_rows=100, batch_seconds=0.2)  # fmt: skip
        self.seen: list[Record] = []
        self.produce = produce

    async def write(self, batch: list[Record]) -> Written:
        self.seen.extend(batch)
        return Written()

    async def idle(self) -> Written | None:
        outputs, self.produce = self.produce, []
        return Written(outputs=outputs) if outputs else None

    def done(self) -> bool:
        return bool(self.seen) and not self.produce


async def _run_probe(probe: _Probe, timeout_s: float = 60.0) -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(probe.run(stop), timeout_s)


# --- every component, with its own user -----------------------------------------------------------------
@pytest.mark.timeout(400)
def test_pipeline_components_authenticate_and_flow(cluster: SecureCluster, tmp_path: Path) -> None:
    """SDK and gateway publish, the streams and enrichment workers (subprocesses) assemble and score, the data
    worker's and the trainer's consumer groups read the scored trajectories: each as its own SCRAM user."""
    sdk_id, gateway_id = str(uuid.uuid4()), str(uuid.uuid4())
    streams = cluster.settings_for("streams", tmp_path / "streams")
    enrich = cluster.settings_for("enrich", tmp_path / "enrich")
    with running_worker(streams, tmp_path / "streams.log"), running_enricher(enrich, tmp_path / "enrich.log"):

        async def sdk_publish() -> None:
            async with AsyncEmitter(_emitter_config(cluster, "sdk")) as emitter:
                for name, record in sample_records(sdk_id).items():
                    await emitter.emit(name, record, key=sdk_id)

        asyncio.run(sdk_publish())
        line = json.loads((PROJECT_ROOT / "examples" / "trajectories.jsonl").read_text().splitlines()[0])
        with running_gateway(cluster.settings_for("gateway", tmp_path / "gateway"), tmp_path / "gateway.log") as gw:
            answer = httpx.post(f"{gw.url}/v1/trajectories", json={"trajectories": [{**line, "id": gateway_id}]})
            assert answer.status_code == 200, answer.text

        codec = codec_for(cluster.admin)

        async def scored() -> set[str]:
            ids = {r.event.record["trajectory_id"] for r in await read(cluster.admin, codec, SCORED) if r.event}
            return ids if {sdk_id, gateway_id} <= ids else set()

        wait_for(scored, timeout_s=180)
    # The data worker's group and the trainer's read what scoring wrote, through the platform's sink loop.
    data = _Probe(cluster.settings_for("data", tmp_path / "data"), cluster.admin.consumer_group(CLICKHOUSE_SINK_GROUP),
                  (cluster.admin.topic(SCORED),), [])  # fmt: skip
    asyncio.run(_run_probe(data))
    trainer_settings = cluster.settings_for("trainer", tmp_path / "trainer")
    announce = Output(cluster.admin.topic(MODEL_VERSIONS), b"m", b"announced")
    trainer = _Probe(trainer_settings, cluster.admin.consumer_group(trainer_group("m")),
                     (cluster.admin.topic(SCORED),), [announce])  # fmt: skip
    asyncio.run(_run_probe(trainer))
    assert {r.key for r in data.seen} >= {sdk_id.encode(), gateway_id.encode()}
    assert trainer.seen
    for log in ("streams.log", "enrich.log", "gateway.log"):
        TRANSCRIPT.append((tmp_path / log).read_text(errors="replace"))


def test_cli_commands_run_as_the_operator(cluster: SecureCluster, tmp_path: Path) -> None:
    created = _cli(cluster, "cli", tmp_path, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert "exists" in created.stdout and cluster.admin.topic(SCORED) in created.stdout
    status = _cli(cluster, "cli", tmp_path, "status")
    assert status.returncode == 0, status.stderr
    dlq = _cli(cluster, "cli", tmp_path, "dlq", "list")
    assert dlq.returncode == 0, dlq.stderr


# --- the ACLs ----------------------------------------------------------------------------------------------
def test_sdk_cannot_write_outside_its_topics(cluster: SecureCluster) -> None:
    async def stray() -> None:
        async with AsyncEmitter(_emitter_config(cluster, "sdk")) as emitter:
            await emitter.send_encoded(b"x", key=b"k", topic=cluster.admin.topic(SCORED))

    with pytest.raises(KafkaAuthorizationError, match=r"'sdk'.*sec\.trajectories\.scored") as refused:
        asyncio.run(stray())
    TRANSCRIPT.append(str(refused.value))


# (user, its group, a topic it reads, a topic outside its ACLs); the gateway joins no group.
STRAYS = [
    ("enrich", ENRICHMENT_GROUP, ENRICHMENT_REQUESTS, SCORED),
    ("data", CLICKHOUSE_SINK_GROUP, SCORED, SCORED),
    ("trainer", trainer_group("m"), SCORED, REWARDS),
    ("gateway", None, None, MODEL_VERSIONS),
]


@pytest.mark.parametrize(("user", "group", "source", "stray"), STRAYS)
def test_stage_cannot_write_outside_its_topics(
    cluster: SecureCluster, tmp_path: Path, user: str, group: str | None, source: str | None, stray: str
) -> None:
    settings = cluster.settings_for(user, tmp_path)
    if group is None or source is None:
        from trajstream.gateway.publisher import Publisher

        async def publish() -> None:
            publisher = Publisher(settings)
            await publisher.start()
            try:
                producer: Any = publisher._producer
                await (await producer.send(settings.topic(stray), b"x"))
            finally:
                await publisher.stop()

        with pytest.raises(TopicAuthorizationFailedError) as raw:
            asyncio.run(publish())
        TRANSCRIPT.append(str(raw.value))
        return
    probe = _Probe(settings, settings.consumer_group(group), (settings.topic(source),),
                   [Output(settings.topic(stray), b"k", b"x")])  # fmt: skip
    probe.done = lambda: False  # type: ignore[method-assign]
    with pytest.raises(KafkaAuthorizationError, match=rf"'{user}'.*{settings.topic(stray)}") as refused:
        asyncio.run(_run_probe(probe))
    TRANSCRIPT.append(str(refused.value))


# --- wrong password, untrusted certificate ------------------------------------------------------------------
def test_wrong_password_names_the_setting(cluster: SecureCluster, tmp_path: Path) -> None:
    async def start() -> None:
        async with AsyncEmitter(_emitter_config(cluster, "sdk", sasl_password="not-the-password")):
            pass

    with pytest.raises(KafkaAuthenticationError, match="TRAJSTREAM_SASL_PASSWORD") as refused:
        asyncio.run(start())
    TRANSCRIPT.append(str(refused.value))
    for args in (("topics", "create"), ("worker", "streams"), ("worker", "enrich")):
        result = _cli(cluster, "cli", tmp_path, *args, TRAJSTREAM_SASL_PASSWORD="not-the-password")
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "TRAJSTREAM_SASL_PASSWORD" in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_untrusted_certificate_names_the_setting(cluster: SecureCluster, tmp_path: Path) -> None:
    untrusted = cluster.settings_for("sdk", tmp_path).model_copy(update={"ssl_cafile": cluster.certs.untrusted_ca})

    async def start() -> None:
        async with AsyncEmitter(_emitter_config(cluster, "sdk", ssl_cafile=cluster.certs.untrusted_ca)):
            pass

    with pytest.raises(KafkaCertificateError, match=r"TRAJSTREAM_SSL_CAFILE.*rogue-ca") as refused:
        asyncio.run(start())
    TRANSCRIPT.append(str(refused.value))
    assert untrusted.ssl_cafile == cluster.certs.untrusted_ca
    for args in (("topics", "create"), ("worker", "streams"), ("gateway",)):
        result = _cli(cluster, "cli", tmp_path, *args, TRAJSTREAM_SSL_CAFILE=str(cluster.certs.untrusted_ca))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "TRAJSTREAM_SSL_CAFILE" in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


# --- no secret anywhere ----------------------------------------------------------------------------------------
def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_no_secret_in_help_status_logs_or_errors(cluster: SecureCluster, tmp_path: Path) -> None:
    from trajstream.cli import main

    env = cluster.env_for("cli", tmp_path)
    runner = CliRunner()
    for path in _commands(main):
        result = runner.invoke(main, [*path, "--help"], env=env)
        assert result.exit_code == 0, (path, result.output)
        TRANSCRIPT.append(result.output)
    TRANSCRIPT.append(_cli(cluster, "cli", tmp_path, "status").stdout)
    TRANSCRIPT.append(repr(cluster.settings_for("cli", tmp_path)))
    TRANSCRIPT.append(str(cluster.settings_for("cli", tmp_path).model_dump()))
    TRANSCRIPT.append(repr(_emitter_config(cluster, "sdk")))
    broker_home = cluster.admin.home.resolve() / "kafka"
    TRANSCRIPT.append((broker_home / "broker.log").read_text(errors="replace"))
    for log in tmp_path.rglob("*.log"):
        TRANSCRIPT.append(log.read_text(errors="replace"))
    secrets = [*cluster.passwords.values(), *key_material(cluster.certs.broker_key)]
    text = "\n".join(TRANSCRIPT)
    assert len(TRANSCRIPT) > 40 and "TRAJSTREAM_SASL_PASSWORD" in text  # the scan saw the earlier tests' output
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets found in the gathered output: {leaked}"
