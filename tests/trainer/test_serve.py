"""`trajstream serve`: OpenAI-compatible answers that name their version, log-probabilities the SDK
records, and a hot reload on a deployed announcement that drops no request in flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

import trajstream.trainer.serve as serve_module
from tests.support.env import free_port
from tests.support.trainer import model, tokenizer
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream.trainer.announce import announce
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry
from trajstream.trainer.serve import ModelServer, watch_announcements
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.openai_chat import ChatRecorder


def _registry(root: Path) -> Registry:
    tok = tokenizer()
    registry = Registry(root, "policy")
    registry.deploy(registry.save(model(tok, seed=0).save_pretrained, tok, None, [], {}).version, "init")
    registry.save(model(tok, seed=1).save_pretrained, tok, "v1", ["w"], {})
    return registry


async def _serving(server: ModelServer) -> tuple[web.AppRunner, str]:
    await server.reload()
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_answers_carry_the_version_and_logprobs_the_sdk_records(tmp_path: Path) -> None:
    server = ModelServer(_registry(tmp_path), "policy")
    runner, base = await _serving(server)
    try:
        client = openai.AsyncOpenAI(base_url=base, api_key="unused")
        messages: list[Any] = [{"role": "user", "content": "refund order 42 please"}]
        completion = await client.chat.completions.create(model="policy", messages=messages, max_tokens=6,
                                                          logprobs=True, temperature=1.0, seed=3)  # fmt: skip
        data = completion.model_dump()
        assert data["model_version"] == "v1" and data["system_fingerprint"] == "v1"
        content = data["choices"][0]["logprobs"]["content"]
        assert content and all(isinstance(t["token_id"], int) and t["logprob"] <= 0 for t in content)
        _, info = ChatRecorder().convert(messages, data, request_model="policy", provider="trajstream",
                                         model_version=None, tool_statuses={}, available_tools=(),
                                         active_entities=(), persist=True)  # fmt: skip
        assert info.model_version == "v1" and info.logprobs is not None
        assert [t.token_id for t in info.logprobs] == [t["token_id"] for t in content]
        async with httpx.AsyncClient() as http:
            bad = await http.post(f"{base}/chat/completions", json={"messages": []})
            assert bad.status_code == 400 and "non-empty" in bad.json()["error"]["message"]
            bad = await http.post(f"{base}/chat/completions", content=b"{nope")
            assert bad.status_code == 400
    finally:
        await runner.cleanup()


async def test_hot_reload_drops_no_request_in_flight(
    broker_settings: Settings, codec: SingleObjectCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TrainerSettings.extend(
        broker_settings, **{"topic_prefix": f"sv{uuid.uuid4().hex[:8]}.", "home": tmp_path}
    )
    await create_topics(settings)
    registry = _registry(settings.registry_dir)
    real = serve_module.generate

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)  # long enough for the reload to happen while these are answered
        return real(*args, **kwargs)

    monkeypatch.setattr(serve_module, "generate", slow)
    server = ModelServer(registry, "policy", concurrency=8)
    runner, base = await _serving(server)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_announcements(server, settings, codec, stop))
    await asyncio.sleep(1.0)  # the watcher reads from the latest offset: let it get there
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            body = {"messages": [{"role": "user", "content": "refund"}], "max_tokens": 4, "temperature": 0}
            in_flight = [asyncio.create_task(http.post(f"{base}/chat/completions", json=body)) for _ in range(6)]
            await asyncio.sleep(0.3)
            assert server.in_flight == 6
            info = registry.deploy("v2", "test")
            await asyncio.to_thread(announce, settings, info, "deployed", "test")
            for _ in range(100):
                if server.current is not None and server.current.version == "v2":
                    break
                await asyncio.sleep(0.1)
            assert server.current is not None and server.current.version == "v2"
            answers = await asyncio.gather(*in_flight)
            assert [a.status_code for a in answers] == [200] * 6
            assert {a.json()["model_version"] for a in answers} == {"v1"}  # each kept the version it began with
            after = await http.post(f"{base}/chat/completions", json=body)
            assert after.json()["model_version"] == "v2" and after.headers["X-Model-Version"] == "v2"
        assert server.reloads == 2
    finally:
        stop.set()
        await watcher
        await runner.cleanup()
