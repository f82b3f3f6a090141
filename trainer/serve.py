"""`trajstream serve`: an OpenAI-compatible endpoint for the deployed model version, its canary, and
adapters loaded at run time.

Every response names the version that produced it (``model_version`` and ``system_fingerprint``, and the
``X-Model-Version`` header) and, with ``logprobs: true``, the sampled tokens' log-probabilities and ids,
which the SDK records in the turn events for the trainer's off-policy correction.

Hot reload: a ``deployed``, ``canary`` or ``rolled_back`` event on ``model.versions`` makes the server
load the registry's deployed version (and its canary, if one serves) beside the current ones and swap
them in. A request holds the version it started with until it finishes, so nothing in flight is dropped
or switched mid-answer.

Canary: requests for the served model name go to the canary with probability ``canary_share``, the rest
to the deployed version; the answer names which one served it, so every trajectory records its version.

vLLM's runtime-LoRA API, for the deployer and for anyone who manages adapters by hand:
``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` loads an adapter trained on this server's base
model; a request with ``model: <lora_name>`` is then answered by it; ``POST /v1/unload_lora_adapter
{"lora_name"}`` removes it. ``POST /v1/completions`` answers a plain prompt. Each adapter here is merged
into its own copy of the base (fine for the small models this server is for; vLLM batches many adapters
over one base).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
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
from trajstream.trainer.weights import ADAPTER_CONFIG, WeightsError, base_of, load_adapter, load_full
from trajstream.trainer.weights import load_version as load_weights
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.kafka_security import start_client
from trajstream_sdk.schemas import MODEL_VERSION

log = logging.getLogger(__name__)
RELOAD_ON = ("deployed", "rolled_back", "canary")


@dataclass(frozen=True)
class Loaded:
    version: str
    model: Any
    tokenizer: Any


def load_version(registry: Registry, version: str) -> Loaded:
    from transformers import AutoTokenizer

    info = registry.get(version)
    tokenizer = AutoTokenizer.from_pretrained(Path(info.path) / "tokenizer")
    model: Any = load_weights(info)
    model.eval()
    return Loaded(version, model, tokenizer)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": {"message": message, "type": kind, "code": status}}))  # fmt: skip


def sample(loaded: Loaded, prompt: list[int], max_tokens: int, temperature: float, want_logprobs: bool,
           seed: int | None) -> dict[str, Any]:  # fmt: skip
    """Sample a completion of ``prompt`` (token ids): text, finish reason, token counts, log-probabilities."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=max_tokens, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
            top_k=0 if temperature > 0 else None, top_p=1.0 if temperature > 0 else None,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, output_scores=True,
            return_dict_in_generate=True,
            # Said outright: otherwise generate asks DeepSpeed's process-wide config whether ZeRO-3 is on,
            # which a trainer in the same process (the learning demo) may be rebuilding at that moment.
            synced_gpus=False,
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


def generate(loaded: Loaded, messages: list[dict[str, Any]], max_tokens: int, temperature: float,
             want_logprobs: bool, seed: int | None) -> dict[str, Any]:  # fmt: skip
    """One chat completion: the messages through the chat template, then ``sample``."""
    rendered: Any = loaded.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    prompt = list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
    return sample(loaded, prompt, max_tokens, temperature, want_logprobs, seed)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the 400 answer saying why there is none."""
    try:
        body = await request.json()
    except ValueError as exc:
        return _error(400, f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _sampling(body: dict[str, Any]) -> tuple[int, float] | web.Response:
    try:
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        temperature = float(body.get("temperature", 1.0))
    except (TypeError, ValueError) as exc:
        return _error(400, f"max_tokens and temperature must be numbers: {exc}")
    if not 1 <= max_tokens <= 4096 or not 0 <= temperature <= 5:
        return _error(400, "max_tokens must be 1..4096 and temperature 0..5")
    return max_tokens, temperature


class ModelServer:
    def __init__(self, registry: Registry, served_name: str, concurrency: int = 4,
                 loader: Callable[[Registry, str], Loaded] = load_version, seed: int | None = None):  # fmt: skip
        self.registry = registry
        self.served_name = served_name
        self.loader = loader
        self.current: Loaded | None = None
        self.canary: Loaded | None = None
        self.canary_share = 0.0
        self.adapters: dict[str, Loaded] = {}  # loaded through /v1/load_lora_adapter, by name
        self.reloads = 0
        self.in_flight = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._reload_lock = asyncio.Lock()
        self._adapter_lock = asyncio.Lock()
        self._route = random.Random(seed)

    async def reload(self) -> str | None:
        """Load the registry's deployed version and canary where they are not the ones served; the deployed
        version served after."""
        async with self._reload_lock:
            deployed = self.registry.deployed()
            if deployed is None:
                return self.current.version if self.current else None
            if self.current is None or self.current.version != deployed.version:
                loaded = await asyncio.to_thread(self.loader, self.registry, deployed.version)
                self.current = loaded  # one assignment: a request has either the old version or the new
                self.reloads += 1
                log.warning("serving %s %s", self.served_name, loaded.version)
            canary = self.registry.canary()
            if canary is None:
                if self.canary is not None:
                    log.warning("canary %s %s ended", self.served_name, self.canary.version)
                self.canary, self.canary_share = None, 0.0
            elif self.canary is None or self.canary.version != canary[0].version:
                loaded = await asyncio.to_thread(self.loader, self.registry, canary[0].version)
                self.canary, self.canary_share = loaded, canary[1]
                log.warning("canary %s %s serves %.0f%% of requests", self.served_name, loaded.version,
                            100 * canary[1])  # fmt: skip
            return self.current.version

    def pick(self, model: Any) -> Loaded | web.Response:
        """The version that answers a request for ``model``: a loaded adapter by its name; for the served
        name (or none), the canary for its share of requests and the deployed version for the rest."""
        if isinstance(model, str) and model in self.adapters:
            return self.adapters[model]
        if model not in (None, "", self.served_name):
            known = ", ".join([self.served_name, *self.adapters])
            return _error(404, f"the model {model!r} does not exist here (served: {known})", "NotFoundError")
        canary, current = self.canary, self.current
        if canary is not None and self._route.random() < self.canary_share:
            return canary
        if current is None:
            return _error(503, f"no deployed version of {self.served_name} yet")
        return current

    async def _answer(self, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.in_flight += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(work)
        finally:
            self.in_flight -= 1

    async def completions(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty list of {role, content}")
        bad = [m for m in messages if not isinstance(m, dict) or not isinstance(m.get("content"), str)
               or m.get("role") not in ("system", "user", "assistant", "tool")]  # fmt: skip
        if bad:
            return _error(400, f"each message needs a role (system, user, assistant, tool) and text: {bad[0]!r}")
        sampling = _sampling(body)
        if isinstance(sampling, web.Response):
            return sampling
        loaded = self.pick(body.get("model"))  # held until this request finishes, whatever reloads meanwhile
        if isinstance(loaded, web.Response):
            return loaded
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]
        result = await self._answer(lambda: generate(loaded, chat, *sampling, bool(body.get("logprobs")),
                                                             body.get("seed")))  # fmt: skip
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": result["text"]},
                                  "finish_reason": result["finish_reason"], "logprobs": None}  # fmt: skip
        if "logprobs" in result:
            choice["logprobs"] = {"content": result["logprobs"]}
        return self._response("chat.completion", loaded, body.get("model"), choice, result)

    async def text_completions(self, request: web.Request) -> web.Response:
        """``POST /v1/completions``: a plain prompt, no chat template."""
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _error(400, "prompt must be a non-empty string")
        sampling = _sampling(body)
        if isinstance(sampling, web.Response):
            return sampling
        loaded = self.pick(body.get("model"))
        if isinstance(loaded, web.Response):
            return loaded
        ids = list(loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]) or [loaded.tokenizer.bos_token_id]
        result = await self._answer(lambda: sample(loaded, ids, *sampling, False, body.get("seed")))
        choice = {"index": 0, "text": result["text"], "finish_reason": result["finish_reason"], "logprobs": None}
        return self._response("text_completion", loaded, body.get("model"), choice, result)

    def _response(self, kind: str, loaded: Loaded, model: Any, choice: dict[str, Any],
                  result: dict[str, Any]) -> web.Response:  # fmt: skip
        response = {
            "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}", "object": kind,
            "created": int(time.time()), "model": model or self.served_name, "model_version": loaded.version,
            "system_fingerprint": loaded.version, "choices": [choice],
            "usage": {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
                      "total_tokens": result["prompt_tokens"] + result["completion_tokens"]},
        }  # fmt: skip
        return web.json_response(response, headers={"X-Model-Version": loaded.version})

    async def load_lora_adapter(self, request: web.Request) -> web.Response:
        """vLLM's ``/v1/load_lora_adapter``: load an adapter trained on this server's base model."""
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            return _error(400, "lora_name and lora_path must be non-empty strings")
        if name in self.adapters or name == self.served_name:
            return _error(400, f"The lora adapter '{name}' has already been loaded.")
        deployed = self.registry.deployed()
        if deployed is None or self.current is None:
            return _error(503, f"no deployed version of {self.served_name}: no base to apply an adapter to")
        base = Path(base_of(deployed)).resolve()
        config_file = Path(path) / ADAPTER_CONFIG
        try:
            trained_on = json.loads(config_file.read_text()).get("base_model_name_or_path")
        except (OSError, ValueError) as exc:
            return _error(400, f"{path} is not a LoRA adapter: cannot read {ADAPTER_CONFIG} ({exc})")
        if not trained_on or Path(trained_on).resolve() != base:
            return _error(400, f"the adapter in {path} was trained on {trained_on!r}, this server's base is {base}")
        version = self._version_at(Path(path)) or name
        tokenizer = self.current.tokenizer

        def load() -> Loaded:
            model = load_adapter(load_full(base), path)
            model.eval()
            return Loaded(version, model, tokenizer)

        async with self._adapter_lock:
            try:
                self.adapters[name] = await asyncio.to_thread(load)
            except (WeightsError, OSError, ValueError, RuntimeError) as exc:
                return _error(400, f"could not load the adapter in {path}: {exc}")
        log.warning("loaded adapter %s (%s) from %s", name, version, path)
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora_adapter(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("lora_name")
        if not isinstance(name, str) or name not in self.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.adapters[name]  # requests already answering with it hold their own reference
        log.warning("unloaded adapter %s", name)
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    def _version_at(self, path: Path) -> str | None:
        """The registry version whose weights are at ``path``, so answers name it as the trainer knows it."""
        try:
            info = self.registry.get(path.resolve().parent.name)
        except KeyError:
            return None
        return info.version if Path(info.path).resolve() == path.resolve().parent else None

    async def models(self, _: web.Request) -> web.Response:
        version = self.current.version if self.current else None
        canary = self.canary.version if self.canary else None
        data = [{"id": self.served_name, "object": "model", "owned_by": "trajstream", "model_version": version,
                 "canary": canary, "canary_share": self.canary_share}]  # fmt: skip
        data += [{"id": name, "object": "model", "owned_by": "trajstream", "model_version": a.version,
                  "parent": self.served_name} for name, a in self.adapters.items()]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_post("/v1/completions", self.text_completions)
        app.router.add_post("/v1/load_lora_adapter", self.load_lora_adapter)
        app.router.add_post("/v1/unload_lora_adapter", self.unload_lora_adapter)
        app.router.add_get("/v1/models", self.models)
        return app


async def watch_announcements(
    server: ModelServer, settings: TrainerSettings, codec: EventCodec, stop: asyncio.Event
) -> None:
    """Reload on each deployed, canary or rolled_back event for the served model line on ``model.versions``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(settings.topic(MODEL_VERSIONS), **settings.consumer_options(), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")  # fmt: skip
    await start_client(consumer, settings.kafka_client_options())
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
