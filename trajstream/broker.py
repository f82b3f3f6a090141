"""A real single-node Apache Kafka broker (KRaft: broker and controller in one JVM) for local use.

The jars come from Maven Central through ``kafka/pom.xml``; the data lives under
``$TRAJSTREAM_HOME/kafka``. Nothing here runs when an external cluster is configured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trajstream.errors import BrokerError, ConfigurationError, PortInUseError
from trajstream.local_process import Progress, locked, log_tail, quiet
from trajstream.settings import Settings
from trajstream_sdk.kafka_security import start_client

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# Per-request and per-segment chatter hides what matters when reading `trajstream broker logs`.
logger.state.name = state.change.logger
logger.state.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.ulog.name = org.apache.kafka.storage.internals.log
logger.ulog.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    bootstrap: str
    external: bool
    pid: int | None = None
    cluster_id: str | None = None
    brokers: int | None = None
    topics: int | None = None
    detail: str = ""


# How Kafka's log says a write found its disk full. Kafka 4.1 takes the data dir offline and, with its only
# log dir (and the metadata log) gone, halts the broker: see tests/chaos/test_exhaustion.py.
_NO_SPACE = "No space left on device"
_STARTED = "--- broker started "  # the line each start writes into the log: what came before is an earlier run


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


# Kafka's Uuid.randomUuid rule: never the zero id, nor the metadata topic's (0, 1), nor one whose
# URL-safe base64 form starts with "-" (command-line parsers take that for an option).
_RESERVED_IDS = (bytes(16), bytes(15) + b"\x01")


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id as Kafka makes one: 16 random bytes, URL-safe base64 without padding."""
    while True:
        raw = random_bytes()
        cluster_id = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if raw not in _RESERVED_IDS and not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class BrokerExtras:
    """What a broker needs beyond the plain local one, e.g. a SASL_SSL listener with its certificates, SCRAM
    users and an authorizer (tests/security/ builds one).

    ``server_properties`` are merged over the generated server.properties (a key given here wins);
    ``format_args`` are added to ``kafka-storage format`` (``--add-scram ...``: SCRAM users must exist before the
    first start, when the inter-broker listener authenticates with one).
    """

    server_properties: Mapping[str, str] = field(default_factory=dict)
    format_args: Sequence[str] = ()


class LocalBroker:
    """Start, stop and inspect the local broker. Safe to call from several processes at once."""

    def __init__(self, settings: Settings, progress: Progress = quiet, extras: BrokerExtras | None = None):
        self.settings = settings
        self.progress = progress
        self.extras = extras or BrokerExtras()
        self.state_dir = settings.home.resolve() / "kafka"
        self.data_dir = self.state_dir / "data"
        self.properties = self.state_dir / "server.properties"
        self.log_config = self.state_dir / "log4j2.properties"
        self.pid_file = self.state_dir / "broker.pid"
        self.log_file = self.state_dir / "broker.log"

    # --- jars ------------------------------------------------------------------------------
    def jars(self) -> list[Path]:
        lib = self.settings.kafka_lib
        found = sorted(lib.glob("*.jar")) if lib.is_dir() else []
        if any(j.name.startswith("kafka_2.13-") for j in found):
            return found
        return self._resolve_jars()

    def _resolve_jars(self) -> list[Path]:
        pom = self.settings.kafka_pom
        if not pom.is_file():
            raise BrokerError(f"no Kafka jars in {self.settings.kafka_lib} and no pom at {pom} to resolve them")
        self.progress(f"resolving Kafka jars from Maven Central with {pom} (once; cached in ~/.m2)")
        cmd = [
            "mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={self.settings.kafka_lib}", "-DincludeScope=runtime",
        ]  # fmt: skip
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except FileNotFoundError:
            raise BrokerError("Maven (mvn) is not installed; it resolves the Kafka jars") from None
        if result.returncode != 0:
            raise BrokerError(f"mvn failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return sorted(self.settings.kafka_lib.glob("*.jar"))

    # --- process -------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our broker if it is alive (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"kafka.Kafka" in cmdline and str(self.properties).encode() in cmdline else None

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.state_dir / ".lock")

    def start(self) -> BrokerStatus:
        if self.settings.uses_external_kafka:
            self.progress(f"external cluster {self.settings.bootstrap} configured: nothing started locally")
            return self.status()
        with self._lock():
            pid = self.pid()
            if pid is not None:
                self.progress(f"broker already running (pid {pid}) on {self.settings.bootstrap}")
                self._wait_ready(pid)
                return self.status()
            self._check_ports()
            jars = self.jars()
            self._write_config()
            if full := self.disk_full():
                raise BrokerError(f"not starting the broker: {full}; free space or grow that filesystem first")
            self._format_once(jars)
            proc = self._launch(jars)
            self.progress(f"broker starting (pid {proc.pid}); waiting for metadata on {self.settings.bootstrap}")
            self._wait_ready(proc.pid, proc)
            return self.status()

    def _check_ports(self) -> None:
        s = self.settings
        for port, name, env in (
            (s.broker_port, "broker", "TRAJSTREAM_BROKER_PORT"),
            (s.controller_port, "controller", "TRAJSTREAM_CONTROLLER_PORT"),
        ):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((s.broker_host, port))
                except OSError as exc:
                    raise PortInUseError(
                        f"the {name} port {s.broker_host}:{port} is already in use by another process "
                        f"({exc.strerror}); stop it or set {env} to a free port"
                    ) from None
        if s.broker_port == s.controller_port:
            raise ConfigurationError("TRAJSTREAM_BROKER_PORT and TRAJSTREAM_CONTROLLER_PORT must differ")

    def _write_config(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{s.broker_host}:{s.controller_port}",
            "listeners": f"PLAINTEXT://{s.broker_host}:{s.broker_port},CONTROLLER://{s.broker_host}:{s.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{s.broker_host}:{s.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": str(s.topic_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(s.limits.message_bytes),
            **self.extras.server_properties,
        }
        # The file may hold listener secrets (a JAAS password): readable by its owner only.
        self.properties.touch(mode=0o600)
        self.properties.chmod(0o600)
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log_config.write_text(_LOG4J2)

    def _classpath(self, jars: list[Path]) -> str:
        return os.pathsep.join(str(j) for j in jars)

    def _format_once(self, jars: list[Path], cluster_id: str | None = None) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = cluster_id or new_cluster_id()
        self.progress(f"formatting broker storage in {self.data_dir} (cluster {cluster_id})")
        cmd = [
            self.settings.java, f"-Dlog4j2.configurationFile={self.log_config}", "-cp", self._classpath(jars),
            # "--cluster-id=ID" in one word: an id may start with "-", which the tool would read as an option.
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self.properties),
            *self.extras.format_args,
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _launch(self, jars: list[Path]) -> subprocess.Popen[bytes]:
        cmd = [
            self.settings.java, f"-Xmx{self.settings.broker_heap}", "-Xms128m", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log_config}", "-cp", self._classpath(jars),
            "kafka.Kafka", str(self.properties),
        ]  # fmt: skip
        with open(self.log_file, "ab") as log:
            log.write(f"{_STARTED}{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
            except FileNotFoundError:
                raise BrokerError(f"Java ({self.settings.java}) is not installed; set TRAJSTREAM_JAVA") from None
        self.pid_file.write_text(str(proc.pid))
        return proc

    def _wait_ready(self, pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + self.settings.broker_start_timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            # Our own child is checked with poll(): the JVM's /proc entry can look odd while it starts.
            exited = proc.poll() is not None if proc is not None else self.pid() != pid
            if exited:
                self.pid_file.unlink(missing_ok=True)
                why = f" ({trouble})" if (trouble := self.disk_trouble()) else ""
                raise BrokerError(f"the broker exited during start-up{why}; last log lines:\n{self.logs(30)}")
            try:
                with _quiet_aiokafka():
                    asyncio.run(_describe(self.settings, timeout_s=5.0))
                return
            except Exception as exc:  # not ready yet: connection refused, no controller, ...
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise BrokerError(
            f"the broker did not answer metadata within {self.settings.broker_start_timeout_s:.0f}s "
            f"({last_error}); last log lines:\n{self.logs(30)}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly (controlled shutdown); returns False when none was running."""
        if self.settings.uses_external_kafka:
            self.progress("external cluster configured: no local broker to stop")
            return False
        with self._lock():
            pid = self.pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.pid() == pid:
                time.sleep(0.1)
            if self.pid() == pid:
                self.progress(f"broker did not stop within {timeout_s:.0f}s; killing it")
                os.kill(pid, signal.SIGKILL)
                while self.pid() == pid:
                    time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)
            return True

    def status(self) -> BrokerStatus:
        external = self.settings.uses_external_kafka
        pid = None if external else self.pid()
        if not external and pid is None:
            trouble = self.disk_trouble()
            return BrokerStatus(
                False, self.settings.bootstrap, external, detail=f"not running{trouble and ': '}{trouble}"
            )
        try:
            with _quiet_aiokafka():
                cluster_id, brokers, topics = asyncio.run(_describe(self.settings, timeout_s=10.0))
        except Exception as exc:
            return BrokerStatus(False, self.settings.bootstrap, external, pid, detail=f"not answering: {exc}")
        return BrokerStatus(True, self.settings.bootstrap, external, pid, cluster_id, brokers, topics)

    def logs(self, lines: int = 100) -> str:
        return log_tail(self.log_file, lines)

    def disk_full(self) -> str:
        """Says so when the data dir's filesystem has less room than one largest record; else empty."""
        try:
            stat = os.statvfs(self.data_dir)
        except OSError:
            return ""
        free, total = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
        if free >= self.settings.limits.message_bytes:
            return ""
        return f"its data dir {self.data_dir} is full ({_size(free)} free of {_size(total)})"

    def disk_trouble(self) -> str:
        """Why the local broker cannot store, if it cannot: its data dir full now, or its last run stopped on a
        full disk (Kafka takes a log dir that fails a write offline, and halts with its only one); else empty."""
        notes = [full] if (full := self.disk_full()) else []
        last_run = self.logs(2000).rpartition(_STARTED)[2]
        if _NO_SPACE in last_run:
            notes.append(
                f"its last run failed writing: disk full ({_NO_SPACE}) in {self.data_dir}; see {self.log_file}"
            )
        return "; ".join(notes)


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """Connection refusals are expected while probing a broker; keep them out of the user's terminal."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _describe(settings: Settings, timeout_s: float) -> tuple[str, int, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(start_client(admin, settings.kafka_client_options()), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        topics = await asyncio.wait_for(admin.list_topics(), timeout_s)
        return str(cluster["cluster_id"]), len(cluster["brokers"]), len(topics)
    finally:
        await admin.close()
