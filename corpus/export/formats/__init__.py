"""The known formats: every module here with a ``FORMATS`` tuple (so a new format edits no shared list)."""

from __future__ import annotations

import importlib
import pkgutil

from trajstream.corpus.export.formats.base import Format


def known_formats() -> dict[str, type[Format]]:
    found: dict[str, type[Format]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base":
            continue
        for cls in getattr(importlib.import_module(f"{__name__}.{module.name}"), "FORMATS", ()):
            if cls.name in found:
                raise RuntimeError(f"two export formats are named {cls.name!r}")
            found[cls.name] = cls
    return dict(sorted(found.items()))
