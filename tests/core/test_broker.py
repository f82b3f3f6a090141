"""The local broker: start, reuse, port conflicts, external clusters, restart with data kept."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support.env import env_for, free_port, trajstream_bin
from trajstream.broker import LocalBroker, new_cluster_id
from trajstream.errors import PortInUseError
from trajstream.settings import Settings
from trajstream.topics import create_topics

pytestmark = pytest.mark.integration


def test_start_reuses_the_running_broker(broker_settings: Settings) -> None:
    if broker_settings.uses_external_kafka:
        pytest.skip("external cluster configured")
    broker = LocalBroker(broker_settings)
    before = broker.status()
    again = broker.start()
    assert before.running and again.running
    assert again.pid == before.pid
    assert again.cluster_id == before.cluster_id


def test_status_command_reports_the_broker(broker_settings: Settings) -> None:
    result = subprocess.run(
        [trajstream_bin(), "broker", "status"], env=env_for(broker_settings), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "running" in result.stdout and broker_settings.bootstrap in result.stdout


def test_a_taken_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(home=tmp_path, broker_port=port, controller_port=free_port())
        with pytest.raises(PortInUseError, match=rf"127.0.0.1:{port} is already in use.*TRAJSTREAM_BROKER_PORT"):
            LocalBroker(settings).start()
        env = {**env_for(settings), "TRAJSTREAM_BROKER_PORT": str(port)}
        result = subprocess.run([trajstream_bin(), "broker", "start"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "already in use" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "kafka" / "broker.pid").exists()


def test_an_external_cluster_starts_nothing(broker_settings: Settings, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap=broker_settings.bootstrap, broker_port=free_port())
    status = LocalBroker(settings).start()
    assert status.running and status.external and status.pid is None
    assert not (tmp_path / "kafka" / "data").exists()
    assert LocalBroker(settings).stop() is False


def test_restart_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, broker_port=free_port(), controller_port=free_port(), topic_partitions=1)
    broker = LocalBroker(settings)
    first = broker.start()
    try:
        meta = (tmp_path / "kafka" / "data" / "meta.properties").read_text()
        asyncio.run(create_topics(settings))
        asyncio.run(_produce(settings, b"kept across restarts"))
        assert broker.stop() is True
        assert broker.pid() is None
        with socket.socket() as probe:  # the port is free again
            probe.bind((settings.broker_host, settings.broker_port))

        second = broker.start()
        assert second.pid != first.pid
        assert second.cluster_id == first.cluster_id
        assert (tmp_path / "kafka" / "data" / "meta.properties").read_text() == meta  # formatted once
        assert asyncio.run(_consume_all(settings)) == [b"kept across restarts"]
    finally:
        broker.stop()
    assert broker.status().running is False


async def _produce(settings: Settings, value: bytes) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("events"), value, key=b"k")
    finally:
        await producer.stop()


async def _consume_all(settings: Settings) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        settings.topic("events"), **settings.kafka_client_options(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()


def test_cluster_ids_never_start_with_a_dash() -> None:
    """Regression: a random id starting with "-" (1 in 64) made kafka-storage read it as an option."""
    draws = iter([b"\xf8" + bytes(15), bytes(16), bytes(15) + b"\x01", b"\x01" * 16])
    cluster_id = new_cluster_id(lambda: next(draws))
    assert cluster_id == "AQEBAQEBAQEBAQEBAQEBAQ"  # the dash-led and the two reserved ids were drawn again


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    """Even an id that starts with "-" reaches Kafka's storage tool as the id, not as an option."""
    settings = Settings(home=tmp_path, broker_port=free_port(), controller_port=free_port())
    broker = LocalBroker(settings)
    dash_id = base64.urlsafe_b64encode(b"\xf8" + bytes(15)).decode().rstrip("=")
    assert dash_id.startswith("-")
    broker._write_config()
    broker._format_once(broker.jars(), cluster_id=dash_id)
    assert f"cluster.id={dash_id}" in (tmp_path / "kafka" / "data" / "meta.properties").read_text()


def test_status_without_a_reachable_broker_closes_its_clients(tmp_path: Path) -> None:
    """Regression: with the broker unreachable, each part's lag probe left an unclosed Kafka consumer, and
    `trajstream status` ended with "Unclosed AIOKafkaConsumer" errors."""
    env = env_for(Settings(home=tmp_path))
    env["TRAJSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run([trajstream_bin(), "status"], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout
    assert "Unclosed" not in result.stdout + result.stderr, result.stderr


def test_status_without_the_local_broker_asks_no_lag(tmp_path: Path) -> None:
    """With the local broker not running there is no lag to ask for: status printed the Kafka client's
    connection errors above its table."""
    env = env_for(Settings(home=tmp_path))
    env.pop("TRAJSTREAM_KAFKA_BOOTSTRAP", None)
    result = subprocess.run([trajstream_bin(), "status"], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "broker" in result.stdout and "not running" in result.stdout
    assert "Unable connect" not in result.stdout + result.stderr and "ERROR" not in result.stderr, result.stderr
