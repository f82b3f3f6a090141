"""The model registry: a directory of versions, each with its weights, tokenizer and metadata.

    {root}/{model}/v{n}/model/        save_pretrained weights (or a LoRA adapter)
    {root}/{model}/v{n}/tokenizer/
    {root}/{model}/v{n}/version.json  number, parent, windows, metrics, status, history
    {root}/{model}/deployed.json      the deployed version, and the ones deployed before it (for rollback)

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

Status = Literal["candidate", "deployed", "rejected", "retired"]


@dataclass
class VersionInfo:
    model_name: str
    version: str
    number: int
    parent: str | None
    path: str
    created_at_ms: int
    windows: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    status: Status = "candidate"
    history: list[dict[str, Any]] = field(default_factory=list)  # {event, at_ms, reason}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


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

    # --- writing --------------------------------------------------------------------------------
    def save(self, write_model: Callable[[str], Any], tokenizer: Any, parent: str | None, windows: list[str],
             metrics: Mapping[str, float]) -> VersionInfo:  # fmt: skip
        """Save a new candidate version. ``write_model(directory)`` writes the weights: a model's
        ``save_pretrained``, or a trainer's ``save_model``, which gathers ZeRO-3's partitioned weights."""
        number = max((v.number for v in self.versions()), default=0) + 1
        name = f"v{number}"
        path = self.dir / name
        write_model(str(path / "model"))
        tokenizer.save_pretrained(path / "tokenizer")
        info = VersionInfo(self.model_name, name, number, parent, str(path.resolve()), int(time.time() * 1000),
                           list(windows), {k: float(v) for k, v in metrics.items()})  # fmt: skip
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
        _write_json(self.dir / "deployed.json", {"version": version, "previous": stack})
        return info

    def rollback(self, reason: str) -> VersionInfo:
        """Deploy the version deployed before the current one again."""
        stack = self._stack()
        current = self.deployed()
        if not stack or current is None:
            raise ValueError(f"nothing to roll back to: {self.model_name} has no earlier deployed version")
        target = stack.pop()
        self.mark(current.version, "retired", "rolled_back", reason)
        info = self.mark(target, "deployed", "deployed", f"rollback from {current.version}: {reason}")
        _write_json(self.dir / "deployed.json", {"version": target, "previous": stack})
        return info

    def _stack(self) -> list[str]:
        pointer = self.dir / "deployed.json"
        return list(json.loads(pointer.read_text()).get("previous", [])) if pointer.exists() else []

    def _write(self, info: VersionInfo) -> None:
        _write_json(Path(info.path) / "version.json", asdict(info))
