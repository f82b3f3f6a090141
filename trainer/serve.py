"""`trajstream serve`: an OpenAI-compatible chat-completions endpoint for the deployed model version.

Every response names the version that produced it (``model_version`` and ``system_fingerprint``, and the
``X-Model-Version`` header) and, with ``logprobs: true``, the sampled tokens' log-probabilities and ids,
which the SDK records in the turn events for the trainer's off-policy correction.

Hot reload: a ``deployed`` (or ``rolled_back``) event on ``model.versions`` makes the server load the
registry's deployed version beside the current one and swap it in. A request holds the version it
started with until it finishes, so nothing in flight is dropped or switched mid-answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from trajstream.errors import CodecError
from trajstream.topics import MODEL_VERSIONS
from trajstream.trainer.config import TrainerSettings
from trajstream.trainer.registry import Registry
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.schemas import MODEL_VERSION

log = logging.getLogger(__name__)
RELOAD_ON = ("deployed", "rolled_back")


@dataclass(frozen=True)
class Loaded:
    version: str
    model: Any
    tokenizer: Any


def load_version(registry: Registry, version: str) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = registry.get(version)
    tokenizer = AutoTokenizer.from_pretrained(Path(info.path) / "tokenizer")
    model: Any = AutoModelForCausalLM.from_pretrained(Path(info.path) / "model")
    model.eval()
    return Loaded(version, model, tokenizer)


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": {"message": message, "type": "invalid_request_error"}}))  # fmt: skip


def generate(loaded: Loaded, messages: list[dict[str, Any]], max_tokens: int, temperature: float,
             want_logprobs: bool, seed: int | None) -> dict[str, Any]:  # fmt: skip
    """One completion: text, finish reason, token counts and (optionally) log-probabilities."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    rendered: Any = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    prompt = list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=max_tokens, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
            top_k=0 if temperature > 0 else None, top_p=1.0 if temperature > 0 else None,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, output_scores=True,
            return_dict_in_generate=True,
        )  # fmt: skip
    new = out.sequences[0, len(prompt) :].tolist()
    finish = "stop" if new and new[-1] == tok.eos_token_id else "length"
    content_ids = new[:-1] if finish == "stop" else new
    result: dict[str, Any] = {"text": tok.decode(content_ids, skip_special_tokens=True), "finish_reason": finish,
                              "prompt_tokens": len(prompt), "completion_tokens": len(new)}  # fmt: skip
    if want_logprobs:
        # The sampling distribution's log-probabilities (after temperature), which is what the behaviour
        # policy's probability of each sampled token is.
        logps = [torch.log_softmax(s[0].float(), dim=-1)[t].item() for s, t in zip(out.scores, new, strict=False)]
        result["logprobs"] = [{"token": tok.convert_ids_to_tokens(t), "token_id": t, "logprob": lp, "top_logprobs": []}
                              for t, lp in zip(content_ids, logps, strict=False)]  # fmt: skip
    return result


class ModelServer:
    def __init__(self, registry: Registry, served_name: str, concurrency: int = 4,
                 loader: Callable[[Registry, str], Loaded] = load_version):  # fmt: skip
        self.registry = registry
        self.served_name = served_name
        self.loader = loader
        self.current: Loaded | None = None
        self.reloads = 0
        self.in_flight = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> str | None:
        """Load the registry's deployed version if it is not the one served; the version served after."""
        async with self._reload_lock:
            deployed = self.registry.deployed()
            if deployed is None:
                return self.current.version if self.current else None
            if self.current is None or self.current.version != deployed.version:
                loaded = await asyncio.to_thread(self.loader, self.registry, deployed.version)
                self.current = loaded  # one assignment: a request has either the old version or the new
                self.reloads += 1
                log.warning("serving %s %s", self.served_name, loaded.version)
            return self.current.version

    async def completions(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty list of {role, content}")
        bad = [m for m in messages if not isinstance(m, dict) or not isinstance(m.get("content"), str)
               or m.get("role") not in ("system", "user", "assistant", "tool")]  # fmt: skip
        if bad:
            return _error(400, f"each message needs a role (system, user, assistant, tool) and text: {bad[0]!r}")
        try:
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
            temperature = float(body.get("temperature", 1.0))
        except (TypeError, ValueError) as exc:
            return _error(400, f"max_tokens and temperature must be numbers: {exc}")
        if not 1 <= max_tokens <= 4096 or not 0 <= temperature <= 5:
            return _error(400, "max_tokens must be 1..4096 and temperature 0..5")
        loaded = self.current  # held until this request finishes, whatever reloads meanwhile
        if loaded is None:
            return _error(503, f"no deployed version of {self.served_name} yet")
        self.in_flight += 1
        try:
            async with self._slots:
                result = await asyncio.to_thread(generate, loaded, [{"role": m["role"], "content": m["content"]}
                                                 for m in messages], max_tokens, temperature,
                                                 bool(body.get("logprobs")), body.get("seed"))  # fmt: skip
        finally:
            self.in_flight -= 1
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": result["text"]},
                                  "finish_reason": result["finish_reason"], "logprobs": None}  # fmt: skip
        if "logprobs" in result:
            choice["logprobs"] = {"content": result["logprobs"]}
        response = {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.served_name, "model_version": loaded.version, "system_fingerprint": loaded.version,
            "choices": [choice],
            "usage": {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
                      "total_tokens": result["prompt_tokens"] + result["completion_tokens"]},
        }  # fmt: skip
        return web.json_response(response, headers={"X-Model-Version": loaded.version})

    async def models(self, _: web.Request) -> web.Response:
        version = self.current.version if self.current else None
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": self.served_name, "object": "model", "owned_by": "trajstream", "model_version": version}
                ],
            }
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        return app


async def watch_announcements(
    server: ModelServer, settings: TrainerSettings, codec: EventCodec, stop: asyncio.Event
) -> None:
    """Reload on each deployed or rolled_back event for the served model line on ``model.versions``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(settings.topic(MODEL_VERSIONS), **settings.kafka_client_options(), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")  # fmt: skip
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    try:
                        event = codec.decode(r.value or b"", expect=MODEL_VERSION).record
                    except CodecError as exc:
                        log.warning("ignoring an unreadable model.versions record at offset %s: %s", r.offset, exc)
                        continue
                    if event["model_name"] == server.registry.model_name and event["event"] in RELOAD_ON:
                        await server.reload()
    finally:
        await consumer.stop()


def run_server(settings: TrainerSettings, host: str, port: int, concurrency: int) -> None:
    """Serve until SIGTERM or SIGINT, reloading on announcements."""
    from trajstream.foreground import run_until_signalled
    from trajstream_sdk.codec import codec_for

    async def work(stop: asyncio.Event) -> None:
        server = ModelServer(Registry(settings.registry_dir, settings.trainer_model_name),
                             settings.trainer_model_name, concurrency)  # fmt: skip
        await server.reload()
        runner = web.AppRunner(server.app())
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.warning("serving %s %s on http://%s:%d/v1", settings.trainer_model_name,
                    server.current.version if server.current else "(nothing deployed yet)", host, port)  # fmt: skip
        try:
            await watch_announcements(server, settings, codec_for(settings), stop)
        finally:
            await runner.cleanup()

    run_until_signalled(work)
