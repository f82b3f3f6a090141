"""The model registry: a directory of versions, each with its weights, tokenizer and metadata.

    {root}/{model}/v{n}/model/        save_pretrained weights, or a LoRA adapter over ``base``
    {root}/{model}/v{n}/tokenizer/
    {root}/{model}/v{n}/version.json  number, parent, base, windows, metrics, status, history
    {root}/{model}/deployed.json      the deployed version, the ones deployed before it (for rollback),
                                      and every deployment in order (staleness is counted in these)
    {root}/{model}/canary.json        the candidate serving a share of requests beside it, if any

Writes go to a temporary file and are renamed into place, so a reader (serving, the CLI) never sees half a
file. One trainer writes a model line; serving and the CLI read it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["candidate", "canary", "deployed", "rejected", "retired"]


@dataclass
class VersionInfo:
    model_name: str
    version: str
    number: int
    parent: str | None
    path: str
    created_at_ms: int
    windows: list[str] = field(default_factory=list)
    # A LoRA version: the directory of the full weights its adapter applies to (None: full weights).
    base: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    status: Status = "candidate"
    history: list[dict[str, Any]] = field(default_factory=list)  # {event, at_ms, reason}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def size_bytes(info: VersionInfo) -> int:
    """Bytes a version's weights take on disk (an adapter alone, for a LoRA version)."""
    return sum(f.stat().st_size for f in (Path(info.path) / "model").rglob("*") if f.is_file())


class Registry:
    def __init__(self, root: Path, model_name: str):
        self.model_name = model_name
        self.dir = root / model_name

    # --- reading --------------------------------------------------------------------------------
    def versions(self) -> list[VersionInfo]:
        out = []
        for meta in self.dir.glob("v*/version.json"):
            out.append(VersionInfo(**json.loads(meta.read_text())))
        return sorted(out, key=lambda v: v.number)

    def get(self, version: str) -> VersionInfo:
        meta = self.dir / version / "version.json"
        if not meta.exists():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise KeyError(f"no version {version!r} of {self.model_name} (known: {known})")
        return VersionInfo(**json.loads(meta.read_text()))

    def number_of(self, version: str) -> int | None:
        try:
            return self.get(version).number
        except KeyError:
            return None

    def deployed(self) -> VersionInfo | None:
        pointer = self.dir / "deployed.json"
        if not pointer.exists():
            return None
        return self.get(json.loads(pointer.read_text())["version"])

    def weights(self, version: str) -> Path:
        return Path(self.get(version).path) / "model"

    def canary(self) -> tuple[VersionInfo, float] | None:
        """The candidate serving a share of requests beside the deployed version, and that share."""
        pointer = self.dir / "canary.json"
        if not pointer.exists():
            return None
        data = json.loads(pointer.read_text())
        return self.get(data["version"]), float(data["share"])

    def deployments(self) -> list[tuple[str, int]]:
        """Every deployment (by the gate, a canary's promotion, by hand or a rollback) in order: (version, at_ms)."""
        pointer = self.dir / "deployed.json"
        data = json.loads(pointer.read_text()) if pointer.exists() else {}
        return [(d["version"], int(d["at_ms"])) for d in data.get("log", [])]

    def deployed_since(self, version: str) -> int | None:
        """Staleness: how many deployments came after ``version`` was last deployed (or, for a version never
        deployed, such as a canary, after it was created). None for a version the registry does not know."""
        log = self.deployments()
        last = max((i for i, (v, _) in enumerate(log) if v == version), default=None)
        if last is not None:
            return len(log) - 1 - last
        try:
            created = self.get(version).created_at_ms
        except KeyError:
            return None
        return sum(1 for _, at in log if at > created)

    # --- writing --------------------------------------------------------------------------------
    def save(self, write_model: Callable[[str], Any], tokenizer: Any, parent: str | None, windows: list[str],
             metrics: Mapping[str, float], base: str | None = None) -> VersionInfo:  # fmt: skip
        """Save a new candidate version. ``write_model(directory)`` writes the weights: a model's
        ``save_pretrained``, or a trainer's ``save_model``, which gathers ZeRO-3's partitioned weights (of a
        LoRA model, the adapter alone: then ``base`` is the directory of the weights it applies to)."""
        number = max((v.number for v in self.versions()), default=0) + 1
        name = f"v{number}"
        path = self.dir / name
        write_model(str(path / "model"))
        tokenizer.save_pretrained(path / "tokenizer")
        info = VersionInfo(self.model_name, name, number, parent, str(path.resolve()), int(time.time() * 1000),
                           list(windows), base, {k: float(v) for k, v in metrics.items()})  # fmt: skip
        # Its size travels with its other metrics (model.versions, the console): readers may not see the files.
        info.metrics["size_bytes"] = float(size_bytes(info))
        info.history.append({"event": "created", "at_ms": info.created_at_ms, "reason": ""})
        self._write(info)  # last: a version is listed only once its files are complete
        return info

    def mark(self, version: str, status: Status, event: str, reason: str,
             metrics: Mapping[str, float] | None = None) -> VersionInfo:  # fmt: skip
        info = self.get(version)
        info.status = status
        info.metrics.update({k: float(v) for k, v in (metrics or {}).items()})
        info.history.append({"event": event, "at_ms": int(time.time() * 1000), "reason": reason})
        self._write(info)
        return info

    def deploy(self, version: str, reason: str) -> VersionInfo:
        previous = self.deployed()
        info = self.mark(version, "deployed", "deployed", reason)
        stack = self._stack()
        if previous is not None and previous.version != version:
            self.mark(previous.version, "retired", "retired", f"replaced by {version}")
            stack.append(previous.version)
        self._point(version, stack)
        return info

    def start_canary(self, version: str, share: float, reason: str) -> VersionInfo:
        if not 0 < share < 1:
            raise ValueError(f"a canary serves a share of requests between 0 and 1, not {share}")
        info = self.mark(version, "canary", "canary", reason)
        _write_json(self.dir / "canary.json", {"version": version, "share": share})
        return info

    def end_canary(self) -> None:
        (self.dir / "canary.json").unlink(missing_ok=True)

    def rollback(self, reason: str) -> VersionInfo:
        """Deploy the version deployed before the current one again."""
        stack = self._stack()
        current = self.deployed()
        if not stack or current is None:
            raise ValueError(f"nothing to roll back to: {self.model_name} has no earlier deployed version")
        target = stack.pop()
        self.mark(current.version, "retired", "rolled_back", reason)
        info = self.mark(target, "deployed", "deployed", f"rollback from {current.version}: {reason}")
        self._point(target, stack)
        return info

    def _stack(self) -> list[str]:
        pointer = self.dir / "deployed.json"
        return list(json.loads(pointer.read_text()).get("previous", [])) if pointer.exists() else []

    def _point(self, version: str, stack: list[str]) -> None:
        log = [{"version": v, "at_ms": at} for v, at in self.deployments()]
        log.append({"version": version, "at_ms": int(time.time() * 1000)})
        _write_json(self.dir / "deployed.json", {"version": version, "previous": stack, "log": log})

    def _write(self, info: VersionInfo) -> None:
        _write_json(Path(info.path) / "version.json", asdict(info))
