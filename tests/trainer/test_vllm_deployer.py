"""The vLLM runtime-LoRA deployer's HTTP calls, against a local server that answers as vLLM does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.env import free_port
from trajstream.trainer.registry import VersionInfo
from trajstream.trainer.vllm_deployer import DeployError, VLLMLoraDeployer


class FakeVLLM:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self.adapters: set[str] = set()
        self.fail_load = False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append((request.path, body, request.headers.get("Authorization")))
        if request.path == "/v1/load_lora_adapter":
            if self.fail_load or body["lora_name"] in self.adapters:
                return web.Response(status=400, text=json.dumps({"error": "adapter already loaded or bad path"}))
            self.adapters.add(body["lora_name"])
        elif request.path == "/v1/unload_lora_adapter":
            if body["lora_name"] not in self.adapters:
                return web.Response(status=404, text="no such adapter")
            self.adapters.remove(body["lora_name"])
        elif body["model"] not in self.adapters:
            return web.Response(status=404, text="model not found")
        return web.json_response({"ok": True})


def _version(n: int) -> VersionInfo:
    return VersionInfo("policy", f"v{n}", n, None, f"/models/policy/v{n}", 0)


async def test_deploy_loads_checks_then_unloads_the_previous_adapter() -> None:
    fake = FakeVLLM()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        deployer = VLLMLoraDeployer(f"http://127.0.0.1:{port}", api_key="k", grace_s=0.0)
        assert await deployer.deploy(_version(1)) == "policy-v1"
        assert await deployer.deploy(_version(2)) == "policy-v2"
        assert [(p, b) for p, b, _ in fake.calls] == [
            ("/v1/load_lora_adapter", {"lora_name": "policy-v1", "lora_path": "/models/policy/v1/model"}),
            ("/v1/completions", {"model": "policy-v1", "prompt": "ok", "max_tokens": 1}),
            ("/v1/load_lora_adapter", {"lora_name": "policy-v2", "lora_path": "/models/policy/v2/model"}),
            ("/v1/completions", {"model": "policy-v2", "prompt": "ok", "max_tokens": 1}),
            ("/v1/unload_lora_adapter", {"lora_name": "policy-v1"}),
        ]
        assert fake.adapters == {"policy-v2"} and {a for _, _, a in fake.calls} == {"Bearer k"}
        fake.fail_load = True
        with pytest.raises(DeployError, match="load_lora_adapter answered 400"):
            await deployer.deploy(_version(3))
        assert deployer.loaded == "policy-v2" and fake.adapters == {"policy-v2"}  # a failed load keeps the old one
    finally:
        await runner.cleanup()


def test_adapter_names_follow_the_version(tmp_path: Path) -> None:
    assert VLLMLoraDeployer("http://x").adapter_name(_version(12)) == "policy-v12"
