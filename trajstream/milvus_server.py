"""A local Milvus standalone server, from the `milvus` package on PyPI (embedded etcd, local storage).

`trajstream up` starts it, like the broker, when TRAJSTREAM_MILVUS_LOCAL is ``server`` and no
TRAJSTREAM_MILVUS_URI names another Milvus. The package's own launcher (``milvus.default_server``) keeps the
server a child of the Python process that started it, and `up` returns; so this module uses the package
only for its binaries and its config template, and runs the binary in a session of its own.

Files:
- ``~/.cache/trajstream/milvus-server-VERSION/bin``: the binaries, unpacked once per machine (~200 MB);
- ``$TRAJSTREAM_HOME/milvus-server/``: ``data/`` (etcd, segments, the message queue), ``configs/``
  (rewritten at each start: the ports may differ, the data stays), ``logs/`` (Milvus' own logs),
  ``milvus.log`` (its output), ``milvus.pid``, ``ready`` (pid, address, version, once it answers), and
  ``root-password`` (mode 0600: generated when first asked for, set at the first start; every request
  needs it) and ``root-password-set``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajstream.errors import TrajstreamError
from trajstream.local_process import Progress, locked, log_tail, quiet
from trajstream.settings import Settings

HOST = "127.0.0.1"
# Where the package's template looks for a free port, one after the other (its own default for the
# REST/metrics port that answers /healthz).
_HEALTH_PORT_FROM = 9091
_ETCD_PORTS_FROM = 2379
_SET_PORTS = ("proxy_port", "etcd_port")  # chosen by the settings and by _etcd_ports, not from the template's
_ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
# Set in the package's template (dotted paths).
_CONFIG: dict[str, Any] = {
    # The components call each other at the address they register; unset, that is the first network
    # interface's, and the server breaks when it changes (a laptop changing networks, a container).
    **{f"{role}.ip": HOST for role in _ROLES},
    # 2.3.5 stops its coordinators before its nodes, which then retry them until this timeout (1800 s by
    # default) before it quits by itself. What it acknowledged is in its write-ahead log whatever the
    # stop (tests/consumers/test_store_outages.py kills it); `stop` flushes the collections first.
    "common.gracefulStopTimeout": 5,
    # Every request must carry the root user's credentials (generated at the first start): 2.3.5 listens on
    # every interface and has no setting to bind loopback alone (docs/milvus.md).
    "common.security.authorizationEnabled": True,
    # Per-request chatter hides what matters in milvus.log (as the broker's log4j2 settings).
    "log.level": "warn",
    "log.file.maxSize": 100,
    "log.file.maxBackups": 2,
}


# Root's password until it is changed (2.3.5 has no setting for another): replaced at the first start.
_DEFAULT_ROOT = ("root", "Milvus")


class MilvusServerError(TrajstreamError):
    """The local Milvus server could not be started, reached or stopped."""


@dataclass(frozen=True)
class MilvusServerStatus:
    running: bool  # its process is alive and it answered
    uri: str
    pid: int | None = None
    version: str | None = None
    collections: int | None = None
    detail: str = ""


def server_uri(settings: Settings) -> str:
    return f"http://{HOST}:{settings.milvus_server_port}"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "trajstream"


def package_version() -> str:
    try:
        import milvus
    except ImportError:
        raise MilvusServerError(
            "the `milvus` package (the Milvus server binary) is not installed; `make install` adds it, or set "
            "TRAJSTREAM_MILVUS_LOCAL=lite"
        ) from None
    return str(milvus.__version__)


def binaries() -> Path:
    """The server's binary directory, unpacked from the package's .lzma files once per machine and version."""
    import milvus

    version = package_version()
    target = cache_dir() / f"milvus-server-{version}"
    bin_dir = target / "bin"
    if (target / ".complete").exists():
        return bin_dir
    source = Path(milvus.__file__).parent / "data" / "bin"
    target.mkdir(parents=True, exist_ok=True)
    with locked(target / ".lock"):
        if (target / ".complete").exists():  # another process unpacked it while we waited
            return bin_dir
        # Into a fresh directory, renamed when whole: a process killed mid-way leaves no half binary behind.
        staging = Path(tempfile.mkdtemp(prefix=".bin-", dir=target))
        for packed in sorted(source.glob("*.lzma")):
            out = staging / packed.name.removesuffix(".lzma")
            with lzma.open(packed) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            out.chmod(0o755)
        shutil.rmtree(bin_dir, ignore_errors=True)
        staging.rename(bin_dir)
        (target / ".complete").write_text(version)
    return bin_dir


def _free(port: int) -> bool:
    """Nothing listens on ``port``. A bind test alone reads a port as taken while a killed server's connections
    to it linger in TIME_WAIT (on its dual-stack socket); the server (Go, SO_REUSEADDR) binds it all the same."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            return True
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((HOST, port)) != 0


class LocalMilvus:
    """Start, stop and inspect the local Milvus server. Safe to call from several processes at once."""

    def __init__(self, settings: Settings, progress: Progress = quiet):
        self.settings = settings
        self.progress = progress
        self.state_dir = settings.home.resolve() / "milvus-server"
        self.pid_file = self.state_dir / "milvus.pid"
        self.ready_file = self.state_dir / "ready"
        self.log_file = self.state_dir / "milvus.log"
        self.etcd_config = self.state_dir / "configs" / "embed-etcd.yaml"
        self.password_file = self.state_dir / "root-password"
        self.alias = "trajstream-" + hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]
        self.uri = server_uri(settings)

    def token(self) -> str:
        """The root user's credentials as pymilvus takes them (``user:password``). The password is generated
        the first time it is asked for (a client may be set up before the server's first start); the server
        takes it at its first start."""
        if not self.password_file.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _create_private(self.password_file, secrets.token_urlsafe(24))
        return "root:" + self.password_file.read_text().strip()

    def _secure_root(self, timeout_s: float) -> None:
        """At the first start: root's default password replaced by the generated one. ``root-password-set``
        marks it done; until then each start tries the generated password first (a start killed after the
        change) and the default second."""
        done = self.state_dir / "root-password-set"
        if done.exists():
            return
        token = self.token()
        try:
            _describe(self.uri, token, timeout_s)
        except Exception:
            from pymilvus import MilvusClient

            user, default = _DEFAULT_ROOT
            client = MilvusClient(self.uri, token=f"{user}:{default}", timeout=timeout_s)
            try:
                client.update_password(user, default, token.split(":", 1)[1], timeout=timeout_s)
            finally:
                client.close()
        done.touch()

    # --- process -------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our server if it is alive (a stale pid file, or a pid reused by another process, is not)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = Path(f"/proc/{pid}/cwd").resolve()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        ours = cmdline[1:3] == [b"run", b"standalone"] and cwd == self.state_dir and state != "Z"
        return pid if ours else None

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.state_dir / ".lock")

    def start(self) -> MilvusServerStatus:
        with self._lock():
            pid = self.pid()
            if pid is not None:
                self.progress(f"milvus: already running (pid {pid}) on {self.uri}")
                self._wait_ready(pid, None, self._ready_mark().get("health_port"))
                return self.status()
            if not _free(self.settings.milvus_server_port):
                raise MilvusServerError(
                    f"the Milvus port {HOST}:{self.settings.milvus_server_port} is already in use by another "
                    "process; stop it, set TRAJSTREAM_MILVUS_SERVER_PORT to a free port, or point "
                    "TRAJSTREAM_MILVUS_URI at that Milvus"
                )
            bin_dir = binaries()
            health_port = self._write_config()
            self.ready_file.unlink(missing_ok=True)
            proc = self._launch(bin_dir, health_port)
            self.progress(f"milvus: starting (pid {proc.pid}) on {self.uri}, data in {self.state_dir / 'data'}")
            self._wait_ready(proc.pid, proc, health_port)
            return self.status()

    def _write_config(self) -> int:
        """The package's template filled in: our port, free internal ports, storage under the state directory.
        Returns the port of /healthz.

        The package's own port resolver binds without SO_REUSEADDR, so a port left in TIME_WAIT by a server
        that was just killed reads as taken; ports are chosen here instead, as the server (Go) binds them."""
        from milvus import MilvusServerConfig

        config = MilvusServerConfig(data_dir=str(self.state_dir))
        client_port, peer_port = self._etcd_ports()
        taken = {self.settings.milvus_server_port, client_port, peer_port}
        config.set("proxy_port", self.settings.milvus_server_port)
        config.set("etcd_port", client_port)
        for key in sorted(k for k in config.configurable_items if k.endswith("_port") and k not in _SET_PORTS):
            port = self._free_port_from(int(config.get(key)), taken)
            config.set(key, port)
            taken.add(port)
        health_port = self._free_port_from(_HEALTH_PORT_FROM, taken)
        for key, value in _CONFIG.items():
            config.set(key, value)
        config.resolve_storage()  # configs/, logs/ and data/ under the state directory
        config.write_config()
        return health_port

    def _etcd_ports(self) -> tuple[int, int]:
        """The embedded etcd's client and peer ports, and its config file (ETCD_CONFIG_PATH) that names them.

        Without one, etcd listens on localhost:2379 and :2380 whatever milvus.yaml says, and a second server
        on the machine (another home, the tests') cannot start. Kept across starts: etcd stores its member's
        peer address with the data."""
        chosen = self.state_dir / "configs" / "etcd-ports.json"
        try:
            client, peer = (int(p) for p in json.loads(chosen.read_text()))
        except (OSError, ValueError, TypeError):
            client, peer = 0, 0
        if not (client and peer and _free(client) and _free(peer)):
            client = self._free_port_from(_ETCD_PORTS_FROM, set())
            peer = self._free_port_from(client + 1, {client})
        chosen.parent.mkdir(parents=True, exist_ok=True)
        chosen.write_text(json.dumps([client, peer]))
        self.etcd_config.write_text("".join(f"{key}: {value}\n" for key, value in {
            "name": "default",
            "listen-client-urls": f"http://{HOST}:{client}", "advertise-client-urls": f"http://{HOST}:{client}",
            "listen-peer-urls": f"http://{HOST}:{peer}", "initial-advertise-peer-urls": f"http://{HOST}:{peer}",
            "initial-cluster": f"default=http://{HOST}:{peer}",
            # Milvus' own embedded-etcd settings (its docker-compose files): compact its history.
            "quota-backend-bytes": 4294967296, "auto-compaction-mode": "revision",
            "auto-compaction-retention": "'1000'",
        }.items()))  # fmt: skip
        return client, peer

    @staticmethod
    def _free_port_from(first: int, taken: set[int]) -> int:
        for port in range(first, first + 2000):
            if port not in taken and _free(port):
                return port
        raise MilvusServerError(f"no free port in {first}-{first + 1999} for the Milvus server")

    def _launch(self, bin_dir: Path, health_port: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(health_port),
            "ETCD_CONFIG_PATH": str(self.etcd_config),  # Milvus reads its settings from the environment too
            "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(bin_dir), os.environ.get("LD_LIBRARY_PATH")])),
        }
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            log.flush()
            # Its own session: `down` (and a stop of `up`'s terminal) reach it only through its pid file.
            proc = subprocess.Popen(
                # --alias: 2.3.5 locks /run/milvus/standalone-ALIAS.pid whatever MILVUS_RUN_DIR says; one per home.
                [str(bin_dir / "milvus"), "run", "standalone", "--alias", self.alias], cwd=self.state_dir, env=env,
                stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        return proc

    def _ready_mark(self) -> dict[str, Any]:
        try:
            mark: dict[str, Any] = json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return {}
        return mark

    def _wait_ready(self, pid: int, proc: subprocess.Popen[bytes] | None, health_port: int | None) -> None:
        deadline = time.monotonic() + self.settings.milvus_server_start_timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            exited = proc.poll() is not None if proc is not None else self.pid() != pid
            if exited:
                self.pid_file.unlink(missing_ok=True)
                raise MilvusServerError(f"the Milvus server exited during start-up; its output ends:\n{self.logs(30)}")
            try:
                if health_port is not None:
                    with urllib.request.urlopen(f"http://{HOST}:{health_port}/healthz", timeout=5) as answer:
                        if b"OK" not in answer.read():
                            raise MilvusServerError("/healthz is not OK yet")
                self._secure_root(timeout_s=5.0)
                version, _ = _describe(self.uri, self.token(), timeout_s=5.0)
                if loading := _loading(
                    self.uri, self.token(), timeout_s=5.0
                ):  # ready is searchable, not only answering
                    raise MilvusServerError(f"still loading {', '.join(loading)}")
            except Exception as exc:  # not ready yet: connection refused, coordinators still starting, ...
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.25)
                continue
            mark = {"pid": pid, "at": time.time(), "uri": self.uri, "version": version, "health_port": health_port}
            tmp = self.ready_file.with_name(f".ready.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(mark))
            tmp.replace(self.ready_file)
            return
        raise MilvusServerError(
            f"the Milvus server did not answer within {self.settings.milvus_server_start_timeout_s:.0f}s "
            f"({last_error[:300]}); its output ends:\n{self.logs(30)}"
        )

    def kill(self) -> int | None:
        """SIGKILL the server (a crash, for tests); returns its pid, or None when none ran."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() == pid:
                time.sleep(0.05)
        return pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server: its collections flushed (sealed segments on disk: a start replays little of its
        log), then SIGTERM, SIGKILL after ``timeout_s``; returns False when none was running."""
        with self._lock():
            pid = self.pid()
            if pid is None:
                self.ready_file.unlink(missing_ok=True)
                self.pid_file.unlink(missing_ok=True)
                return False
            try:
                _flush(self.uri, self.token(), timeout_s=min(timeout_s, 30.0))
            except Exception as exc:  # it may not answer (that is why it is stopped): stop it all the same
                self.progress(f"milvus: no flush before the stop ({str(exc)[:200]})")
            self.ready_file.unlink(missing_ok=True)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.pid() == pid:
                time.sleep(0.1)
            if self.pid() == pid:
                self.progress(f"milvus: no exit {timeout_s:.0f}s after SIGTERM; killed")
                self.kill()
            self.pid_file.unlink(missing_ok=True)
            return True

    def status(self) -> MilvusServerStatus:
        pid = self.pid()
        if pid is None:
            return MilvusServerStatus(False, self.uri, detail="not running")
        if self._ready_mark().get("pid") != pid:
            return MilvusServerStatus(False, self.uri, pid, detail="starting")
        try:
            version, collections = _describe(self.uri, self.token(), timeout_s=5.0)
        except Exception as exc:
            return MilvusServerStatus(False, self.uri, pid, detail=f"not answering: {str(exc)[:200]}")
        return MilvusServerStatus(True, self.uri, pid, version, collections, "ready")

    def logs(self, lines: int = 100) -> str:
        return log_tail(self.log_file, lines)


def _create_private(path: Path, text: str) -> None:
    """``path`` created with ``text``, readable by its owner alone whatever the umask, unless it exists: written
    whole to a temporary file, then linked into place (several processes may race to create it; one wins)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _describe(uri: str, token: str, timeout_s: float) -> tuple[str, int]:
    """The server's version and how many collections it has: it answers requests, not only /healthz."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, token=token, timeout=timeout_s)
    try:
        return str(client.get_server_version(timeout=timeout_s)), len(client.list_collections(timeout=timeout_s))
    finally:
        client.close()


def _collections(uri: str, token: str, timeout_s: float) -> Iterator[tuple[Any, str]]:
    """(a client of its database, name) for every collection of every database. A client per database:
    2.3.5 lacks DescribeDatabase, which pymilvus' use_database calls."""
    from pymilvus import MilvusClient

    admin = MilvusClient(uri, token=token, timeout=timeout_s)
    try:
        databases = admin.list_databases(timeout=timeout_s)
    finally:
        admin.close()
    for database in databases:
        client = MilvusClient(f"{uri}/{database}", token=token, timeout=timeout_s)
        try:
            for collection in client.list_collections(timeout=timeout_s):
                yield client, collection
        finally:
            client.close()


def _flush(uri: str, token: str, timeout_s: float) -> None:
    """Flush every collection: their growing segments sealed and written to disk."""
    for client, collection in _collections(uri, token, timeout_s):
        client.flush(collection, timeout=timeout_s)


def _loading(uri: str, token: str, timeout_s: float) -> list[str]:
    """The collections a restarted server is still loading (it loads again what was loaded, in the background)."""
    return [name for client, name in _collections(uri, token, timeout_s)
            if "Loading" in str(client.get_load_state(name, timeout=timeout_s).get("state"))]  # fmt: skip
