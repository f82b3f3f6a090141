"""`trajstream serve`: OpenAI-compatible answers that name their version, log-probabilities the SDK
records, a hot reload on a deployed announcement that drops no request in flight, a canary's share of
requests, and vLLM's runtime-LoRA endpoints over the adapters the trainer saved."""

from __future__ import annotations

import asyncio
import math
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
from tests.support.trainer import model, tokenizer, trained_lora_registry
from trajstream.settings import Settings
from trajstream.topics import create_topics
from trajstream.trainer.announce import announce
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry
from trajstream.trainer.serve import ModelServer, load_version, watch_announcements
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.openai_chat import ChatRecorder


@pytest.fixture(scope="module")
def lora_line(tmp_path_factory: pytest.TempPathFactory, codec: SingleObjectCodec) -> Registry:
    """v1 (full weights) deployed; v2 and v3, LoRA adapters over v1 that the trainer saved."""
    return trained_lora_registry(tmp_path_factory.mktemp("lora"), codec)


@pytest.fixture(scope="module")
def other_line(tmp_path_factory: pytest.TempPathFactory, codec: SingleObjectCodec) -> Registry:
    """Another model line: its own v1 (other weights, elsewhere) and an adapter v2 trained over it."""
    return trained_lora_registry(tmp_path_factory.mktemp("other"), codec, model_name="other", adapters=1, seed=1)


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


CANARY_SHARE = 0.3
CANARY_REQUESTS = 200


async def test_a_canary_answers_its_share_of_requests_and_each_answer_names_its_version(lora_line: Registry) -> None:
    registry = lora_line
    registry.start_canary("v2", CANARY_SHARE, "test")
    server = ModelServer(registry, "policy", seed=11)
    runner, base = await _serving(server)
    try:
        body = {"model": "policy", "messages": [{"role": "user", "content": "refund the damaged order"}],
                "max_tokens": 2}  # fmt: skip
        async with httpx.AsyncClient(timeout=60) as http:
            listed = (await http.get(f"{base}/models")).json()["data"]
            assert [(m["id"], m["model_version"], m["canary"], m["canary_share"]) for m in listed] == [
                ("policy", "v1", "v2", CANARY_SHARE)]  # fmt: skip
            versions = []
            for _ in range(CANARY_REQUESTS):
                answer = await http.post(f"{base}/chat/completions", json=body)
                assert answer.status_code == 200, answer.text
                assert answer.headers["X-Model-Version"] == answer.json()["model_version"]
                versions.append(answer.json()["model_version"])
            assert set(versions) == {"v1", "v2"}  # both answer, and nothing else does
            # The canary's share, within four standard deviations of the binomial count.
            n, p = CANARY_REQUESTS, CANARY_SHARE
            assert abs(versions.count("v2") - n * p) <= 4 * math.sqrt(n * p * (1 - p)), versions.count("v2")
            unknown = await http.post(f"{base}/chat/completions", json={**body, "model": "gpt-4o"})
            assert unknown.status_code == 404 and "'gpt-4o' does not exist" in unknown.json()["error"]["message"]

            registry.end_canary()
            assert await server.reload() == "v1" and server.canary is None
            after = [(await http.post(f"{base}/chat/completions", json=body)).json()["model_version"]
                     for _ in range(30)]  # fmt: skip
            assert after == ["v1"] * 30
    finally:
        registry.end_canary()
        await runner.cleanup()


async def _post(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[int, str]:
    """Status and message: the error's message, or the text of a success."""
    response = await http.post(url, json=body)
    if response.status_code >= 400:
        return response.status_code, response.json()["error"]["message"]
    return response.status_code, response.text


async def test_adapters_the_trainer_saved_load_answer_and_unload_at_run_time(
    lora_line: Registry, other_line: Registry, tmp_path: Path
) -> None:
    import torch

    registry = lora_line
    server = ModelServer(registry, "policy")
    runner, base = await _serving(server)
    load, unload = f"{base}/load_lora_adapter", f"{base}/unload_lora_adapter"
    v1, v2, v3 = (registry.get(v) for v in ("v1", "v2", "v3"))
    messages = [{"role": "user", "content": "refund the damaged order"}]
    chat = {"messages": messages, "max_tokens": 4, "temperature": 1.0, "logprobs": True, "seed": 5}
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            status, text = await _post(http, load, {"lora_name": "policy-v2", "lora_path": f"{v2.path}/model"})
            assert status == 200 and "policy-v2" in text
            assert await _post(http, load, {"lora_name": "policy-v3", "lora_path": f"{v3.path}/model"}) == (
                200, "Success: LoRA adapter 'policy-v3' added successfully.")  # fmt: skip
            assert set(server.adapters) == {"policy-v2", "policy-v3"}

            # Each answers as the registry's version it came from, with that version's weights (its adapter
            # merged into v1), which are not the base's.
            for name, version in (("policy-v2", "v2"), ("policy-v3", "v3")):
                answer = await http.post(f"{base}/chat/completions", json={**chat, "model": name})
                assert answer.status_code == 200, answer.text
                data = answer.json()
                assert data["model"] == name and data["model_version"] == version == answer.headers["X-Model-Version"]
                own = load_version(registry, version)
                expected = serve_module.generate(own, messages, 4, 1.0, True, 5)
                assert data["choices"][0]["message"]["content"] == expected["text"]
                served = server.adapters[name].model.state_dict()
                assert all(torch.equal(t, served[k]) for k, t in own.model.state_dict().items())
            bare = load_version(registry, "v1").model.state_dict()
            served = server.adapters["policy-v2"].model.state_dict()
            assert not all(torch.equal(t, served[k]) for k, t in bare.items())
            assert (await http.post(f"{base}/chat/completions", json=chat)).json()["model_version"] == "v1"

            listed = {m["id"]: m for m in (await http.get(f"{base}/models")).json()["data"]}
            assert listed.keys() == {"policy", "policy-v2", "policy-v3"}
            assert (listed["policy-v2"]["model_version"], listed["policy-v2"]["parent"]) == ("v2", "policy")

            prompt = {"model": "policy-v2", "prompt": "refund the damaged order", "max_tokens": 3}
            text_answer = await http.post(f"{base}/completions", json=prompt)
            assert text_answer.status_code == 200, text_answer.text
            data = text_answer.json()
            assert data["object"] == "text_completion" and data["model_version"] == "v2"
            assert isinstance(data["choices"][0]["text"], str) and data["usage"]["prompt_tokens"] == 4
            assert 1 <= data["usage"]["completion_tokens"] <= 3

            # Refused: a name already loaded (or the served one), a path that holds no adapter, an adapter
            # trained on another base. None of them changes what is loaded.
            status, message = await _post(http, load, {"lora_name": "policy-v2", "lora_path": f"{v3.path}/model"})
            assert status == 400 and "already been loaded" in message
            status, message = await _post(http, load, {"lora_name": "policy", "lora_path": f"{v2.path}/model"})
            assert status == 400 and "already been loaded" in message
            for path in (f"{v1.path}/model", str(tmp_path)):
                status, message = await _post(http, load, {"lora_name": "x", "lora_path": path})
                assert status == 400 and f"{path} is not a LoRA adapter" in message
            foreign = f"{other_line.get('v2').path}/model"
            status, message = await _post(http, load, {"lora_name": "x", "lora_path": foreign})
            assert status == 400 and "trained on" in message and "this server's base is" in message
            assert f"{other_line.get('v1').path}/model" in message and f"{v1.path}/model" in message
            assert set(server.adapters) == {"policy-v2", "policy-v3"}

            assert await _post(http, unload, {"lora_name": "policy-v2"}) == (
                200, "Success: LoRA adapter 'policy-v2' removed successfully.")  # fmt: skip
            assert set(server.adapters) == {"policy-v3"}
            for url, body in ((f"{base}/chat/completions", chat), (f"{base}/completions", {"prompt": "ok"})):
                status, message = await _post(http, url, {**body, "model": "policy-v2"})
                assert status == 404 and "'policy-v2' does not exist" in message
            answer = await http.post(f"{base}/chat/completions", json={**chat, "model": "policy-v3"})
            assert answer.json()["model_version"] == "v3"  # the other adapter still answers
            status, message = await _post(http, unload, {"lora_name": "policy-v2"})
            assert status == 404 and "cannot be found" in message
    finally:
        await runner.cleanup()
