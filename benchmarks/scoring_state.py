"""Scoring table: bytes per trajectory held by the streams worker, once scored and once the retention sweep slimmed it.

    python benchmarks/scoring_state.py [--trajectories 200] [--turns 3]

Runs assembly, heuristic enrichment and scoring in one process (streams.in_process, no Kafka) over trajectories
shaped like the chaos load's (a tool call and its answer per turn), then hands each one's state the expire the
assembly sweep forwards. Bytes are the encoded table values, as the memory store and the changelog hold them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid

from trajstream.settings import Settings
from trajstream.streams.assembly import Input
from trajstream.streams.in_process import Pipeline
from trajstream.topics import EVENTS_TOPIC
from trajstream_sdk.codec import EventCodec, codec_for
from trajstream_sdk.events import Message, ToolCall, ToolResponse, end_record, start_record, turn_record


def events(codec: EventCodec, trajectories: int, turns: int) -> list[tuple[str, bytes]]:
    encode = codec.encode
    out: list[tuple[str, bytes]] = []
    for n in range(trajectories):
        tid = str(uuid.uuid4())
        out.append((EVENTS_TOPIC, encode("trajectory_start", start_record(tid, f"Refund order {n}", agent_id="bench"))))
        for i in range(turns):
            messages = [
                Message.text("user", f"Where is order {n}? It was due on Monday."),
                Message("assistant", ToolCall("lookup", f"c{i}", {"order_id": n, "page": i})),
                Message("tool", ToolResponse("lookup", f"c{i}", {"status": "delivered", "order": n})),
                Message.text("assistant", f"Order {n} was delivered on Tuesday; a refund is on its way."),
            ]
            out.append((EVENTS_TOPIC, encode("turn", turn_record(tid, i, messages, duration_ms=300))))
        out.append((EVENTS_TOPIC, encode("trajectory_end", end_record(tid, "success", turn_count=turns))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trajectories", type=int, default=200)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(topic_prefix="bench.")
    codec = codec_for(settings)
    pipeline = Pipeline(settings, codec)
    pipeline.run(events(codec, args.trajectories, args.turns))
    scorer, assembler = pipeline.scorer, pipeline.assembler
    scored = [len(scorer.dump(state)) for state in pipeline.scoring.values()]
    slim = []
    for key, state in pipeline.scoring.items():
        asked = assembler.expire_message(key.decode(), 0, 0)
        [expire] = assembler.handle(Input(asked.topic, 0, 0, key, asked.value, 0), None).outputs
        result = asyncio.run(scorer.handle(Input(expire.topic, 0, 0, key, expire.value, 0), state))
        assert result.state is not None, "the expire did not slim the state"
        slim.append(len(scorer.dump(result.state)))
    print(f"{len(scored)} trajectories of {args.turns} turns")
    kept, slimmed = statistics.mean(scored), statistics.mean(slim)
    print(
        f"scoring state per trajectory: {kept:.0f} bytes kept whole (the baseline: before issue 17, forever), "
        f"{slimmed:.0f} bytes once slimmed"
    )
    # The factor the slim divides the state by (the baseline's bytes over ours): at least 10.
    print(f"RESULT scoring_state_{args.turns}_turns_bytes_saved ratio={kept / slimmed:.1f} target=10")


if __name__ == "__main__":
    main()
