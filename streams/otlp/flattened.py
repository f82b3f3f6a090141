"""Conventions that flatten a list of messages into attributes, ``prefix.N.path.to.field``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _listify(node: Any) -> Any:
    """Dicts whose keys are all indices become lists in index order (gaps closed, so that a huge index
    cannot make a huge list)."""
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {k: _listify(v) for k, v in node.items()}


def unflatten(attributes: Mapping[str, Any], prefix: str) -> list[Any]:
    """The list ``prefix.N...`` attributes describe: ``a.0.role=x, a.0.tool_calls.1.id=y`` -> ``[{role: x,
    tool_calls: [{id: y}]}]``."""
    root: dict[Any, Any] = {}
    start = prefix + "."
    for key, value in attributes.items():
        if not key.startswith(start):
            continue
        path: list[Any] = [int(s) if s.isdigit() else s for s in key[len(start) :].split(".")]
        if not isinstance(path[0], int) or len(path) < 2:
            continue
        node = root
        for step in path[:-1]:
            child = node.setdefault(step, {})
            if not isinstance(child, dict):
                break  # a.0.content and a.0.content.x both set: keep the first, ignore the other
            node = child
        else:
            node[path[-1]] = value
    listed = _listify(root)
    return listed if isinstance(listed, list) else []
