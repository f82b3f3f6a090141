"""Deploy versions to a vLLM server through its runtime LoRA API (the production path).

vLLM started with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` loads and unloads
adapters while it serves:

    POST {base}/v1/load_lora_adapter    {"lora_name": "policy-v7", "lora_path": "/models/policy/v7/model"}
    POST {base}/v1/unload_lora_adapter  {"lora_name": "policy-v6"}

Agents ask for ``model="policy-v7"`` (or for the alias the deployer returns), so a request in flight on
v6 finishes on v6: the old adapter is unloaded only after the new one answers, and after ``grace_s``.
The registry directory must be visible to the vLLM server at the same path (a shared volume).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from trajstream.errors import TrajstreamError
from trajstream.trainer.registry import VersionInfo


class DeployError(TrajstreamError):
    """The vLLM server refused to load, serve or unload an adapter, or could not be reached."""


@dataclass
class VLLMLoraDeployer:
    base_url: str
    api_key: str | None = None
    grace_s: float = 30.0
    timeout_s: float = 120.0
    loaded: str | None = None  # the adapter name currently deployed

    def adapter_name(self, info: VersionInfo) -> str:
        return f"{info.model_name}-{info.version}"

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url.rstrip('/')}{path}"
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:  # unreachable, refused, timed out: the deploy failed all the same
            raise DeployError(f"vLLM {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise DeployError(f"vLLM {path} answered {response.status_code}: {response.text[:500]}")

    async def deploy(self, info: VersionInfo) -> str:
        """Load the version's adapter, check it answers, then unload the previous one after the grace period."""
        name = self.adapter_name(info)
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            await self._post(client, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": f"{info.path}/model"})
            # A one-token completion: the adapter is loaded and serves before the old one goes.
            await self._post(client, "/v1/completions", {"model": name, "prompt": "ok", "max_tokens": 1})
            previous, self.loaded = self.loaded, name
            if previous is not None and previous != name:
                await asyncio.sleep(self.grace_s)
                await self._post(client, "/v1/unload_lora_adapter", {"lora_name": previous})
        return name
