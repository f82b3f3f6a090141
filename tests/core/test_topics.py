"""Topics: created explicitly and idempotently, with settings' partitions and configs; no auto-creation."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from trajstream.settings import Settings
from trajstream.topics import TOPICS, create_topics, internal_topics

pytestmark = pytest.mark.integration


async def test_create_is_idempotent_and_applies_settings(broker_settings: Settings) -> None:
    settings = broker_settings.model_copy(
        update={"topic_prefix": "idem.", "topic_partitions": 2, "topic_retention_ms": 3_600_000,
                # A trajectory limit other than the broker's: the topics' record limit is not its message.max.bytes.
                "assembly_max_bytes": 4 * 1024 * 1024}
    )  # fmt: skip
    assert settings.limits.message_bytes != broker_settings.limits.message_bytes
    first = await create_topics(settings)
    second = await create_topics(settings)
    assert all(r.created for r in first)
    assert not any(r.created for r in second)
    assert {r.name for r in second} == {settings.topic(s.name) for s in TOPICS + internal_topics(settings)}
    assert settings.topic("streams-assembly-changelog") in {r.name for r in second}
    assert all(r.partitions == 2 for r in second)

    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        everything = TOPICS + internal_topics(settings)
        resources = [ConfigResource(ConfigResourceType.TOPIC, settings.topic(s.name)) for s in everything]
        described = await admin.describe_configs(resources)
        configs: dict[str, dict[str, str]] = {}
        for response in described:
            for _err, _msg, _type, name, entries in response.resources:
                configs[name] = {e[0]: e[1] for e in entries}
    finally:
        await admin.close()
    for spec in TOPICS:
        config = configs[settings.topic(spec.name)]
        assert config["cleanup.policy"] == ("compact" if spec.compacted else "delete"), spec.name
        if not spec.compacted and not spec.dead_letters:
            assert config["retention.ms"] == "3600000"
    # Every topic, changelogs included, takes the largest record on its own, not by the broker's default
    # (an external cluster's is 1 MiB).
    for spec in everything:
        config = configs[settings.topic(spec.name)]
        assert config["max.message.bytes"] == str(settings.limits.message_bytes), spec.name
    assert settings.limits.message_bytes > settings.limits.dead_letter_bytes > 2 * settings.max_event_bytes


async def test_the_broker_does_not_auto_create_topics(broker_settings: Settings) -> None:
    producer = AIOKafkaProducer(**broker_settings.kafka_client_options(), request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            await producer.send_and_wait("not-created-by-anyone", b"x")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(**broker_settings.kafka_client_options())
    await admin.start()
    try:
        assert "not-created-by-anyone" not in await admin.list_topics()
    finally:
        await admin.close()
