"""Load an instructions report's patched system messages as agentlightning 0.3.0 `PromptTemplate`s and render
them; print what came of each, as one JSON line: {"reports": [{"patches": [...]}, ...]}, one per file given.

    python load_prompt.py instructions.json [more.json ...]

Several reports in one run: importing agentlightning takes about 27 s on 2 cores, the loading milliseconds.

Each patch's `prompt_template` (`{engine, template}`) is validated by `PromptTemplate.model_validate`, published
as the `system_prompt` resource of an `InMemoryLightningStore` (`add_resources`, as APO publishes the prompts
it proposes), read back with `get_latest_resources` (as a runner gets it) and rendered with the template's own
`format()`, with no arguments: a system message has no placeholders, so anything that `format` takes for one
(a literal `{order_id}` left single) raises here. What is printed, per patch: the engine, whether the render is
the patch's text exactly, and the render.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch a price list at import

from agentlightning.store.memory import InMemoryLightningStore
from agentlightning.types import PromptTemplate


async def load(patch: dict[str, Any]) -> dict[str, Any]:
    store = InMemoryLightningStore()
    await store.add_resources({"system_prompt": PromptTemplate.model_validate(patch["prompt_template"])})
    latest = await store.get_latest_resources()
    assert latest is not None, "the store kept no resources"
    template = latest.resources["system_prompt"]
    assert isinstance(template, PromptTemplate), f"the store gave back a {type(template).__name__}"
    try:
        rendered: str | None = template.format()
        error = None
    except (KeyError, IndexError, ValueError) as exc:  # str.format's complaints about stray braces
        rendered, error = None, f"{type(exc).__name__}: {exc}"
    return {"engine": template.engine, "resources_id": latest.resources_id, "rendered": rendered,
            "error": error, "renders_text": rendered == patch["text"]}  # fmt: skip


async def patches_of(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    patches = [c["patch"] for c in report["findings"] if "patch" in c]
    return {"patches": [await load(p) for p in patches]}


async def main(paths: list[str]) -> None:
    print(json.dumps({"reports": [await patches_of(p) for p in paths]}, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
