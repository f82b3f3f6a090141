"""The gateway against the real broker: what a 2xx means, and what each kind of bad input gets."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.support.env import env_for, free_port, trajstream_bin
from tests.support.gateway import running_gateway
from tests.support.landing import land, landing_settings
from tests.support.streams import read
from trajstream.settings import Settings
from trajstream.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, OTLP_SPANS_TOPIC
from trajstream_sdk.codec import SingleObjectCodec
from trajstream_sdk.events import Message, end_record, start_record, turn_record

pytestmark = pytest.mark.integration

TRACE = "5b8efff798038103d269b633813fc60c"


def _span_json(span_id: str, trace_id: str = TRACE, **extra: Any) -> dict[str, Any]:
    return {"traceId": trace_id, "spanId": span_id, "name": "chat gpt-4", "kind": 3,
            "startTimeUnixNano": "1760000000000000000", "endTimeUnixNano": "1760000001200000000",
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "97"}}], **extra}  # fmt: skip


def _otlp_json(spans: list[dict[str, Any]], service: str = "support-bot") -> bytes:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]}).encode()  # fmt: skip


def _events(codec: SingleObjectCodec, agent: str = "support-bot") -> tuple[str, list[dict[str, Any]]]:
    tid = str(uuid.uuid4())
    start = start_record(tid, "Refund order 42", agent_id=agent)
    turn = turn_record(tid, 0, [Message.text("user", "Refund order 42"), Message.text("assistant", "Done.")])
    end = end_record(tid, "success", turn_count=1)
    items = [{"type": "trajectory_start", "record": start}, {"type": "turn", "record": turn},
             {"type": "trajectory_end", "record": end}]  # fmt: skip
    return tid, json.loads(json.dumps(items, default=lambda d: int(d.timestamp() * 1000)))


def _spans_on_topic(settings: Settings, codec: SingleObjectCodec) -> dict[str, list[Any]]:
    """Span ids per trace id on the otlp.spans topic, and the attributes of each span."""
    out: dict[str, list[Any]] = {}
    for r in asyncio.run(read(settings, codec, OTLP_SPANS_TOPIC)):
        assert r.event is not None and r.key == r.event.record["trace_id"].encode()
        data = TracesData.FromString(r.event.record["traces_data"])
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                out.setdefault(r.event.record["trace_id"], []).extend(ss.spans)
    return out


def _letters(settings: Settings, codec: SingleObjectCodec) -> list[dict[str, Any]]:
    return [r.event.record for r in asyncio.run(read(settings, codec, DEAD_LETTER_TOPIC)) if r.event]


def test_events_batch_answers_per_item_and_dead_letters_the_bad_ones(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    _, items = _events(codec)
    bad_turn = {"type": "turn", "record": {**items[1]["record"], "turn_index": "zero"}}
    with running_gateway(topics, tmp_path / "gw.log") as gw:
        ok = httpx.post(f"{gw.url}/v1/events", json={"events": items})
        assert ok.status_code == 200 and ok.json()["accepted"] == 3
        mixed = httpx.post(f"{gw.url}/v1/events", json={"events": [items[1], bad_turn, {"type": "nope"}]})
    assert mixed.status_code == 207
    body = mixed.json()
    assert body["accepted"] == 1 and body["refused"] == 2
    statuses = {r["index"]: r for r in body["results"]}
    assert statuses[0]["status"] == 200 and statuses[1]["status"] == 400 and statuses[2]["status"] == 400
    assert "turn_index" in statuses[1]["error"]
    # Acknowledged means on the topic: three events, and the valid turn again (the assembly drops the copy).
    events = [r.event.name for r in asyncio.run(read(topics, codec, EVENTS_TOPIC)) if r.event]
    assert sorted(events) == ["trajectory_end", "trajectory_start", "turn", "turn"]
    letters = [d for d in _letters(topics, codec) if d["stage"] == "gateway"]
    assert len(letters) == 2 and all(d["source"] == "http:/v1/events" for d in letters)
    assert any(b'"zero"' in d["payload"] for d in letters)


def test_trajectories_in_the_emit_line_format_land_whole(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path, chdb_dir: Path
) -> None:
    settings = landing_settings(topics, chdb_dir)
    tid = str(uuid.uuid4())
    line = {"id": tid, "task": "Refund order 42", "agent_id": "support-bot", "messages": [
        {"role": "user", "content": "Refund order 42"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "refund", "arguments": "{\"order\": 42}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\": true}", "status": "error"},
        {"role": "assistant", "content": "It failed."}], "outcome": "failure"}  # fmt: skip
    with running_gateway(settings, tmp_path / "gw.log") as gw:
        first = httpx.post(f"{gw.url}/v1/trajectories", content=json.dumps(line) + "\n" + "{broken\n")
        again = httpx.post(f"{gw.url}/v1/trajectories", json={"trajectories": [line]})  # a retry: no duplicate
    assert first.status_code == 207 and first.json()["accepted"] == 1
    assert again.status_code == 200
    landed = land(settings, codec, [tid], tmp_path / "worker.log")[tid]
    assert landed.trajectory["outcome"] == "failure" and len(landed.turns) == 2
    assert [(m["role"], m["kind"]) for m in landed.messages] == [
        ("user", "text"),
        ("assistant", "tool_call"),
        ("tool", "tool_response"),
        ("assistant", "text"),
    ]
    assert [(c["tool"], c["status"]) for c in landed.tool_calls] == [("refund", "error")]


def test_otlp_protobuf_partial_success_is_answered_in_protobuf(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    ss = rs.scope_spans.add()
    good = ss.spans.add(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex("eee19b7ec3c1b174"), name="chat")
    good.attributes.add(key="gen_ai.operation.name").value.string_value = "chat"
    ss.spans.add(trace_id=b"", span_id=bytes.fromhex("eee19b7ec3c1b175"), name="no trace id")
    ss.spans.add(trace_id=bytes.fromhex("a" * 32), span_id=b"\x00" * 8, name="zero span id")
    with running_gateway(topics, tmp_path / "gw.log") as gw:
        answer = httpx.post(f"{gw.url}/v1/traces", content=request.SerializeToString(),
                            headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-protobuf")
    parsed = ExportTraceServiceResponse.FromString(answer.content)
    assert parsed.partial_success.rejected_spans == 2
    assert "no valid trace id" in parsed.partial_success.error_message
    spans = _spans_on_topic(topics, codec)
    assert [s.name for s in spans[TRACE]] == ["chat"]
    letters = [d for d in _letters(topics, codec) if d["error_type"] == "SpanRejected"]
    assert len(letters) == 2


def test_otlp_json_with_int64_strings_and_kvlist_content_is_kept_as_sent(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    kvlist = {"key": "gen_ai.input.messages", "value": {"arrayValue": {"values": [{"kvlistValue": {"values": [
        {"key": "role", "value": {"stringValue": "user"}},
        {"key": "parts", "value": {"arrayValue": {"values": [{"kvlistValue": {"values": [
            {"key": "type", "value": {"stringValue": "text"}},
            {"key": "content", "value": {"stringValue": "Weather in Paris?"}}]}}]}}}]}}]}}}  # fmt: skip
    span = _span_json("eee19b7ec3c1b174")
    span["attributes"].append(kvlist)
    with running_gateway(topics, tmp_path / "gw.log") as gw:
        answer = httpx.post(f"{gw.url}/v1/traces", content=_otlp_json([span]),
                            headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}  # full success: no partialSuccess
    (stored,) = _spans_on_topic(topics, codec)[TRACE]
    attributes = {a.key: a.value for a in stored.attributes}
    assert attributes["gen_ai.usage.input_tokens"].int_value == 97  # "97" in JSON, an int64 on the topic
    assert stored.start_time_unix_nano == 1760000000000000000
    message = attributes["gen_ai.input.messages"].array_value.values[0].kvlist_value
    assert {kv.key for kv in message.values} == {"role", "parts"}


def test_a_gzip_bomb_is_refused_with_413_after_decompression(
    topics: Settings, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", compresslevel=9)  # 64 MiB inflated, ~64 KiB sent
    assert len(bomb) < 200_000
    with running_gateway(topics, tmp_path / "gw.log", TRAJSTREAM_GATEWAY_MAX_REQUEST_BYTES=str(4 << 20)) as gw:
        answer = httpx.post(f"{gw.url}/v1/traces", content=bomb,
                            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})  # fmt: skip
        small = httpx.post(f"{gw.url}/v1/traces", content=gzip.compress(_otlp_json([_span_json("eee19b7ec3c1b174")])),
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})  # fmt: skip
    assert answer.status_code == 413 and "after decompression" in answer.json()["message"]
    assert small.status_code == 200  # gzip itself is fine
    assert [s.span_id.hex() for s in _spans_on_topic(topics, codec)[TRACE]] == ["eee19b7ec3c1b174"]


def test_an_otlp_logs_payload_sent_to_traces_is_a_400(topics: Settings, codec: SingleObjectCodec,
                                                     tmp_path: Path) -> None:  # fmt: skip
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1760000000000000000,
                                                                       severity_number=9)  # fmt: skip
    record.body.string_value = "hello"
    logs_json = {
        "resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "1", "body": {"stringValue": "x"}}]}]}]
    }
    with running_gateway(topics, tmp_path / "gw.log") as gw:
        as_proto = httpx.post(f"{gw.url}/v1/traces", content=logs.SerializeToString(),
                              headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        as_json = httpx.post(f"{gw.url}/v1/traces", json=logs_json)
        garbage = httpx.post(f"{gw.url}/v1/traces", content=b"\xff\xfe not protobuf",
                             headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    assert as_proto.status_code == 400 and b"no valid trace id" in as_proto.content
    assert as_json.status_code == 400 and "logs payload" in as_json.json()["message"]
    assert garbage.status_code == 400
    assert _spans_on_topic(topics, codec) == {}


def _add_key(settings: Settings, *args: str) -> str:
    result = subprocess.run([str(trajstream_bin()), "gateway", "keys", "add", *args], env=env_for(settings),
                            capture_output=True, text=True, check=True)  # fmt: skip
    return result.stdout.strip()


def test_keys_missing_wrong_and_out_of_scope(topics: Settings, codec: SingleObjectCodec, tmp_path: Path) -> None:
    topics = topics.model_copy(update={"home": tmp_path / "home"})  # a keys file of its own
    key = _add_key(topics, "--agent", "support-bot")
    stored = (topics.home / "gateway" / "keys.json").read_text()
    assert key.startswith("tsk_") and key.split("_", 2)[2] not in stored  # only the salted hash is kept
    tid, items = _events(codec)
    _, other_agent = _events(codec, agent="billing-bot")
    with running_gateway(topics, tmp_path / "gw.log") as gw:
        missing = httpx.post(f"{gw.url}/v1/events", json={"events": items})
        wrong = httpx.post(f"{gw.url}/v1/events", json={"events": items},
                           headers={"Authorization": f"Bearer {key[:-2]}xx"})  # fmt: skip
        scoped = httpx.post(f"{gw.url}/v1/events", json={"events": other_agent},
                            headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        billing_span = _otlp_json([_span_json("eee19b7ec3c1b174")], "billing")
        otlp_scoped = httpx.post(
            f"{gw.url}/v1/traces",
            content=billing_span,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        fine = httpx.post(f"{gw.url}/v1/events", json={"events": items}, headers={"Authorization": f"Bearer {key}"})
        basic = httpx.post(f"{gw.url}/v1/traces", content=_otlp_json([_span_json("eee19b7ec3c1b174")]),
                           headers={"Content-Type": "application/json"}, auth=("pk", key))  # fmt: skip
    assert missing.status_code == 401 and wrong.status_code == 401
    assert scoped.status_code == 403 and "support-bot" in scoped.json()["error"]
    assert otlp_scoped.status_code == 403 and otlp_scoped.json()["code"] == 403
    assert fine.status_code == 200 and basic.status_code == 200
    # Refused requests wrote nothing; the accepted ones wrote their events and span.
    events = [r.event.record["trajectory_id"] for r in asyncio.run(read(topics, codec, EVENTS_TOPIC)) if r.event]
    assert events == [tid] * 3
    assert len(_spans_on_topic(topics, codec)[TRACE]) == 1
    log = (tmp_path / "gw.log").read_text()
    assert key.split("_", 2)[2] not in log


def test_without_a_key_the_gateway_refuses_to_listen_beyond_loopback(topics: Settings, tmp_path: Path) -> None:
    env = {
        **env_for(topics.model_copy(update={"home": tmp_path})),
        "TRAJSTREAM_GATEWAY_HOST": "0.0.0.0",
        "TRAJSTREAM_GATEWAY_PORT": str(free_port()),
    }
    result = subprocess.run([str(trajstream_bin()), "gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "no API key" in result.stderr + result.stdout


def test_tls_from_settings_serves_https_only(topics: Settings, codec: SingleObjectCodec, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    tls = {"TRAJSTREAM_GATEWAY_TLS_CERT": str(cert), "TRAJSTREAM_GATEWAY_TLS_KEY": str(key)}
    _, items = _events(codec)
    with running_gateway(topics, tmp_path / "gw.log", **tls) as gw:
        assert gw.url.startswith("https://")
        sent = httpx.post(f"{gw.url}/v1/events", json={"events": items},
                          verify=ssl.create_default_context(cafile=str(cert)))  # fmt: skip
        with pytest.raises(httpx.HTTPError):
            httpx.post(gw.url.replace("https://", "http://") + "/v1/events", json={"events": items}, timeout=5)
    assert sent.status_code == 200 and sent.json()["accepted"] == 3
