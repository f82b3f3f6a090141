"""API keys: scoped to one agent or one environment, stored as salted hashes, shown once.

A key reads ``tsk_<id>_<secret>``: the id finds the entry, the secret is checked against its salted
SHA-256. The secret is 32 random bytes, so a fast hash is enough: a slow one protects guessable
passwords, and nobody guesses 256 bits. Keys are never logged; only their id is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from trajstream.errors import ConfigurationError

ScopeKind = Literal["agent", "environment"]
_PREFIX = "tsk_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scope: ScopeKind
    value: str  # the agent id or environment the key may write for
    salt: str
    sha256: str
    created_at: float

    def allows(self, *, agent_id: str | None = None, environment: str | None = None) -> bool:
        """Whether this key may write for ``agent_id`` / ``environment`` (a value that is not known is no limit)."""
        if self.scope == "agent":
            return agent_id is None or agent_id == self.value
        return environment is None or environment == self.value

    def describe(self) -> str:
        return f"{self.key_id} ({self.scope} {self.value})"


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


class KeyStore:
    """The keys file (JSON, mode 0600). Read at start and whenever it changes on disk."""

    def __init__(self, path: Path):
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._mtime: float | None = None
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._keys, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        try:
            entries = json.loads(self.path.read_text())
            self._keys = {e["key_id"]: ApiKey(**e) for e in entries}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(f"cannot read the gateway's keys file {self.path}: {exc}") from exc
        self._mtime = mtime

    @property
    def keys(self) -> list[ApiKey]:
        self._reload()
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    @property
    def configured(self) -> bool:
        return bool(self.keys)

    def add(self, scope: ScopeKind, value: str) -> str:
        """Create a key and return it; only its salted hash is stored."""
        if not value:
            raise ConfigurationError(f"a key's {scope} must not be empty")
        key_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_hex(16)
        entry = ApiKey(key_id, scope, value, salt, _digest(salt, secret), time.time())
        self._write([*self.keys, entry])
        return f"{_PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        kept = [k for k in self.keys if k.key_id != key_id]
        if len(kept) == len(self.keys):
            return False
        self._write(kept)
        return True

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump([asdict(k) for k in keys], handle, indent=2)
        tmp.replace(self.path)
        self._mtime = None
        self._reload()

    def verify(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None. Constant-time on the secret."""
        if not presented.startswith(_PREFIX):
            return None
        key_id, sep, secret = presented[len(_PREFIX) :].partition("_")
        self._reload()
        entry = self._keys.get(key_id)
        if not sep or entry is None:
            return None
        return entry if hmac.compare_digest(_digest(entry.salt, secret), entry.sha256) else None
