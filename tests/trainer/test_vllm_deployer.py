"""The vLLM runtime-LoRA deployer against `trajstream serve`'s runtime-LoRA endpoints (which answer as vLLM's
do), loading the adapters the trainer saved."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.support.env import free_port
from tests.support.trainer import trained_lora_registry
from trajstream.trainer.registry import Registry, VersionInfo
from trajstream.trainer.serve import ModelServer
from trajstream.trainer.vllm_deployer import DeployError, VLLMLoraDeployer
from trajstream_sdk.codec import SingleObjectCodec

GRACE_S = 2.0  # long enough to see both adapters answer between the new one's check and the old one's unload


@pytest.fixture(scope="module")
def lora_line(tmp_path_factory: pytest.TempPathFactory, codec: SingleObjectCodec) -> Registry:
    """v1 (full weights) deployed; v2 and v3, LoRA adapters over v1 that the trainer saved."""
    return trained_lora_registry(tmp_path_factory.mktemp("lora"), codec)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serving(server: ModelServer, seen: list[tuple[str, str | None]]) -> tuple[web.AppRunner, str]:
    """The server on a free port, recording each request's path and Authorization header in ``seen`` once it
    has been answered."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        seen.append((request.path, request.headers.get("Authorization")))
        return response

    await server.reload()
    app = server.app()
    app.middlewares.append(record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def _version_of(http: httpx.AsyncClient, base: str, model: str) -> tuple[int, str | None]:
    answer = await http.post(f"{base}/v1/completions", json={"model": model, "prompt": "refund", "max_tokens": 1})
    return answer.status_code, answer.json().get("model_version")


async def test_deploy_loads_checks_then_unloads_the_previous_adapter(lora_line: Registry) -> None:
    registry = lora_line
    server = ModelServer(registry, "policy")
    seen: list[tuple[str, str | None]] = []
    runner, base = await _serving(server, seen)
    try:
        deployer = VLLMLoraDeployer(base, api_key="k", grace_s=GRACE_S)
        async with httpx.AsyncClient(timeout=60) as http:
            assert await deployer.deploy(registry.get("v2")) == "policy-v2"
            assert set(server.adapters) == {"policy-v2"} and deployer.loaded == "policy-v2"
            assert await _version_of(http, base, "policy-v2") == (200, "v2")

            seen.clear()
            deploying = asyncio.create_task(deployer.deploy(registry.get("v3")))
            deadline = asyncio.get_running_loop().time() + 60
            # The new adapter loads and passes its check ...
            while "/v1/completions" not in [p for p, _ in seen] and not deploying.done():
                assert asyncio.get_running_loop().time() < deadline, seen
                await asyncio.sleep(0.01)
            # ... and for the grace period after, both answer: a request still on v2 is not cut off.
            await asyncio.sleep(GRACE_S / 4)
            assert not deploying.done(), f"the deploy was over before its grace period: {seen}"
            assert set(server.adapters) == {"policy-v2", "policy-v3"}
            assert await _version_of(http, base, "policy-v2") == (200, "v2")
            assert await deploying == "policy-v3"
            assert set(server.adapters) == {"policy-v3"} and deployer.loaded == "policy-v3"
            assert await _version_of(http, base, "policy-v3") == (200, "v3")
            assert await _version_of(http, base, "policy-v2") == (404, None)
            # The deployer's calls, in order, each with the API key (this test's own requests carry none).
            deployer_calls = [(p, a) for p, a in seen if a is not None]
            assert deployer_calls == [("/v1/load_lora_adapter", "Bearer k"), ("/v1/completions", "Bearer k"),
                                      ("/v1/unload_lora_adapter", "Bearer k")]  # fmt: skip

            # Full weights are no adapter: vLLM refuses them, and what was deployed stays.
            with pytest.raises(DeployError, match=r"load_lora_adapter answered 400: .*is not a LoRA adapter"):
                await deployer.deploy(registry.get("v1"))
            assert set(server.adapters) == {"policy-v3"} and deployer.loaded == "policy-v3"
    finally:
        await runner.cleanup()


def _version(root: Path, n: int) -> VersionInfo:
    return VersionInfo("policy", f"v{n}", n, f"v{n - 1}", str(root / "policy" / f"v{n}"), 0, base=str(root / "v1"))


async def test_a_server_that_is_down_is_a_deploy_error(tmp_path: Path) -> None:
    deployer = VLLMLoraDeployer(f"http://127.0.0.1:{free_port()}", grace_s=0.0, timeout_s=5.0)
    with pytest.raises(DeployError, match=r"/v1/load_lora_adapter failed: ConnectError"):
        await deployer.deploy(_version(tmp_path, 2))
    assert deployer.loaded is None


def test_adapter_names_follow_the_version(tmp_path: Path) -> None:
    assert VLLMLoraDeployer("http://x").adapter_name(_version(tmp_path, 12)) == "policy-v12"
