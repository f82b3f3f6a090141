"""A real broker with a SASL_SSL listener (SCRAM-SHA-512, TLS from certs.py), the StandardAuthorizer and one
SCRAM user per component, started through the project's LocalBroker with its BrokerExtras."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.security.certs import Certificates
from trajstream.broker import BrokerExtras, LocalBroker
from trajstream.settings import Settings

MECHANISM: Final = "SCRAM-SHA-512"
ADMIN = "admin"
_JAAS = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="{}" password="{}";'
_ACL_TOOL = Path(__file__).with_name("CreateAcls.java")


def new_password() -> str:
    # A prefix no other text has, so a scan that finds it found this password.
    return f"pw{secrets.token_hex(12)}"


@dataclass(frozen=True)
class SecureCluster:
    admin: Settings  # the super user's settings; home holds the broker
    certs: Certificates
    passwords: dict[str, str]  # user -> password

    @property
    def bootstrap(self) -> str:
        return self.admin.bootstrap

    def settings_for(self, user: str, home: Path, **update: object) -> Settings:
        """A component's settings: the cluster as an external one, authenticated as ``user``."""
        return Settings(
            home=home, kafka_bootstrap=self.bootstrap, topic_prefix=self.admin.topic_prefix,
            topic_partitions=self.admin.topic_partitions, security_protocol="SASL_SSL", sasl_mechanism=MECHANISM,
            sasl_username=user, sasl_password=self.passwords[user], ssl_cafile=self.certs.ca, **update,  # type: ignore[arg-type]
        )  # fmt: skip

    def env_for(self, user: str, home: Path, **extra: str) -> dict[str, str]:
        """The environment of a `trajstream` subprocess that runs as ``user``: only TRAJSTREAM_* variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJSTREAM_")}
        env.update({
            "TRAJSTREAM_HOME": str(home), "TRAJSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "TRAJSTREAM_TOPIC_PREFIX": self.admin.topic_prefix,
            "TRAJSTREAM_TOPIC_PARTITIONS": str(self.admin.topic_partitions),
            "TRAJSTREAM_SECURITY_PROTOCOL": "SASL_SSL", "TRAJSTREAM_SASL_MECHANISM": MECHANISM,
            "TRAJSTREAM_SASL_USERNAME": user, "TRAJSTREAM_SASL_PASSWORD": self.passwords[user],
            "TRAJSTREAM_SSL_CAFILE": str(self.certs.ca), **extra,
        })  # fmt: skip
        return env


def broker_extras(settings: Settings, certs: Certificates, passwords: dict[str, str]) -> BrokerExtras:
    """The client listener becomes SASL_SSL (also the inter-broker one, as the admin user); the controller
    listener stays plaintext on loopback, and its anonymous principal (the broker itself) is a super user."""
    host, port, controller = settings.broker_host, settings.broker_port, settings.controller_port
    properties = {
        "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _JAAS.format(ADMIN, passwords[ADMIN]),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca),
        "ssl.endpoint.identification.algorithm": "https",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    scram = [arg for user, password in passwords.items()
             for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")]  # fmt: skip
    return BrokerExtras(properties, scram)


def start_secure_broker(settings: Settings, certs: Certificates, passwords: dict[str, str]) -> LocalBroker:
    """Start the broker; ``settings`` must authenticate as the admin (the start-up probe uses them)."""
    broker = LocalBroker(settings, extras=broker_extras(settings, certs, passwords))
    broker.start()
    return broker


def create_acls(cluster: SecureCluster, acls: Iterable[str]) -> None:
    """Create ACLs (lines of CreateAcls.java's format) with the Admin API, as the admin user."""
    s = cluster.admin
    state = s.home.resolve() / "kafka"
    config = state / "acl-admin.properties"
    config.touch(mode=0o600)
    config.write_text(
        f"bootstrap.servers={s.bootstrap}\nsecurity.protocol=SASL_SSL\nsasl.mechanism={MECHANISM}\n"
        f"sasl.jaas.config={_JAAS.format(ADMIN, cluster.passwords[ADMIN])}\n"
        f"ssl.truststore.type=PEM\nssl.truststore.location={cluster.certs.ca}\n"
    )
    jars = os.pathsep.join(str(j) for j in LocalBroker(s).jars())
    cmd = [
        s.java,
        f"-Dlog4j2.configurationFile={state / 'log4j2.properties'}",
        "-cp",
        jars,
        str(_ACL_TOOL),
        str(config),
    ]
    result = subprocess.run(cmd, input="\n".join(acls), capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"creating ACLs failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
