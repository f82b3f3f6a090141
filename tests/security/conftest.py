"""One SASL_SSL broker (SCRAM-SHA-512, TLS, ACLs) for the security tests, started once for the package: the tests
share it and only read or write their own topic prefix's topics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.security.acls import ACCESS, acl_lines
from tests.security.certs import make_certificates
from tests.security.secure_broker import ADMIN, MECHANISM, SecureCluster, create_acls, new_password, start_secure_broker
from tests.support.env import free_port
from trajstream.settings import Settings
from trajstream.topics import create_topics


@pytest.fixture(scope="package")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    base = tmp_path_factory.mktemp("secure")
    certs = make_certificates(base / "tls")
    passwords = {user: new_password() for user in (ADMIN, *ACCESS)}
    admin = Settings(
        home=base / "broker-home", broker_port=free_port(), controller_port=free_port(), topic_partitions=2,
        topic_prefix="sec.", security_protocol="SASL_SSL", sasl_mechanism=MECHANISM, sasl_username=ADMIN,
        sasl_password=passwords[ADMIN], ssl_cafile=certs.ca,  # type: ignore[arg-type]
    )  # fmt: skip
    broker = start_secure_broker(admin, certs, passwords)
    try:
        cluster = SecureCluster(admin, certs, passwords)
        # The operator's CLI user creates the topics: its CREATE ACL is what `trajstream topics create` needs.
        create_acls(cluster, acl_lines(admin))
        asyncio.run(create_topics(cluster.settings_for("cli", base / "cli-home")))
        yield cluster
    finally:
        broker.stop()
