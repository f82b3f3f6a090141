"""A fixed evaluation set for embedding paths, and how far a path's neighbours agree with the fp32 model's.

The corpus is what the Milvus sinks embed: trajectory and decision-point texts (``summaries``) of generated
trajectories, assembled by the streams' own ``Assembler``, with varied tasks, tools, arguments, results
and replies; the queries are what recall embeds (``task: ...`` for ``similar`` and ``recommend_tools``, a
state and an action for ``predict_outcome``), paraphrasing the tasks. The same seed gives the same set.
A faster path is acceptable when the top-5 neighbours it finds for each query are the fp32
PyTorch model's: ``neighbour_agreement`` is the mean share of the reference's top k that the candidate
finds too.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from trajstream.assembled import TrajectoryView
from trajstream.consumers.summaries import decision_points, decision_text, state_text, trajectory_text
from trajstream.settings import Settings
from trajstream.streams.assembly import Assembler, Input, State
from trajstream.topics import ASSEMBLED, EVENTS_TOPIC
from trajstream_sdk.codec import EventCodec
from trajstream_sdk.events import Message, ToolCall, ToolResponse, end_record, start_record, turn_record

_TASKS = [
    ("Refund order {n} that arrived damaged", "get my money back for broken order {n}"),
    ("Reset the password of user {name}", "{name} cannot log in and needs a new password"),
    ("Book a flight from {city} to {city2} on {day}", "find me a plane ticket {city} to {city2} for {day}"),
    ("Summarise support ticket {n}", "give me the gist of ticket {n}"),
    ("Cancel subscription {n} for {name}", "{name} wants to stop paying for plan {n}"),
    ("Translate document {n} into {lang}", "I need doc {n} in {lang}"),
    ("Update the shipping address of order {n} to {city}", "send order {n} to {city} instead"),
    ("File an expense report for the trip to {city}", "claim my costs for the {city} trip"),
    ("Find the invoice for order {n}", "where is the bill for purchase {n}"),
    ("Upgrade {name}'s plan to premium", "move {name} to the premium tier"),
    ("Check the delivery status of parcel {n}", "where is my package {n}"),
    ("Schedule a meeting with {name} on {day}", "set up a call with {name} {day}"),
    ("Close duplicate ticket {n}", "ticket {n} is a duplicate, close it"),
    ("Apply discount code {code} to order {n}", "use coupon {code} on my order {n}"),
    ("Export the sales report for {day} as CSV", "download {day}'s sales numbers in a spreadsheet"),
    ("Add {name} to the billing team", "give {name} access to billing"),
]
_TOOLS = ["lookup_order", "issue_refund", "reset_password", "search_flights", "book_flight", "get_ticket",
          "cancel_subscription", "translate", "update_address", "create_expense", "find_invoice", "change_plan",
          "track_parcel", "create_event", "close_ticket", "apply_coupon", "export_report", "add_member"]  # fmt: skip
_NAMES = ["alice", "bob", "chen", "dana", "emeka", "farah", "gustav", "hana", "ivan", "jun"]
_CITIES = ["Berlin", "Lagos", "Osaka", "Lima", "Oslo", "Austin", "Pune", "Porto"]
_DAYS = ["Monday", "Tuesday", "Friday", "next week", "tomorrow", "the 14th"]
_LANGS = ["German", "French", "Japanese", "Spanish"]
_STATUSES = ["success", "success", "success", "error", "timeout"]
_REPLIES = ["Done.", "I could not finish this.", "The refund was issued.", "Here is what I found.",
            "Please confirm the details.", "That order does not exist."]  # fmt: skip


def _fill(template: str, rng: random.Random) -> dict[str, str]:
    return {"n": str(rng.randrange(100, 99_999)), "name": rng.choice(_NAMES), "city": rng.choice(_CITIES),
            "city2": rng.choice(_CITIES), "day": rng.choice(_DAYS), "lang": rng.choice(_LANGS),
            "code": f"SAVE{rng.randrange(5, 50)}"}  # fmt: skip


def _events(codec: EventCodec, task: str, rng: random.Random) -> tuple[str, list[tuple[str, bytes]]]:
    tid = str(uuid.UUID(int=rng.getrandbits(128)))
    start = start_record(tid, task, agent_id="eval", domain="support")
    events = [(EVENTS_TOPIC, codec.encode("trajectory_start", start))]
    steps = rng.randint(2, 5)
    tools = rng.sample(_TOOLS, steps)
    previous: tuple[str, str, str] | None = None
    for i, tool in enumerate(tools):
        messages = [Message.text("user", task if i == 0 else rng.choice(["go on", "and then?", f"also {tool}"]))]
        if previous is not None:
            status = rng.choice(_STATUSES)
            messages.insert(0, Message("tool", ToolResponse(previous[0], previous[1], {"ok": status == "success",
                                                                                      "id": previous[2]}, status)))  # type: ignore[arg-type]  # fmt: skip
        arg = str(rng.randrange(1, 9999))
        messages.append(Message("assistant", ToolCall(tool, f"c{i}", {"id": arg, "note": rng.choice(_NAMES)})))
        events.append((EVENTS_TOPIC, codec.encode("turn", turn_record(tid, i, messages, duration_ms=100))))
        previous = (tool, f"c{i}", arg)
    assert previous is not None
    last = [Message("tool", ToolResponse(previous[0], previous[1], {"ok": True}, "success")),
            Message.text("assistant", rng.choice(_REPLIES))]  # fmt: skip
    events.append((EVENTS_TOPIC, codec.encode("turn", turn_record(tid, steps, last, duration_ms=100))))
    outcome = rng.choice(["success", "success", "failure"])
    events.append((EVENTS_TOPIC, codec.encode("trajectory_end", end_record(tid, outcome, turn_count=steps + 1))))  # type: ignore[arg-type]
    return tid, events


def _assembled(assembler: Assembler, settings: Settings, tid: str, events: list[tuple[str, bytes]]) -> list[bytes]:
    """The assembled trajectory records these events lead to (assembly alone: the texts need no score)."""
    state: bytes | State | None = None
    out: list[bytes] = []
    for offset, (topic, value) in enumerate(events):
        result = assembler.handle(Input(settings.topic(topic), 0, offset, tid.encode(), value, 0), state)
        state = result.state if result.state is not None else state
        out += [o.value for o in result.outputs if o.topic == settings.topic(ASSEMBLED)]
    return out


def evaluation_set(settings: Settings, codec: EventCodec, trajectories: int = 600,
                   seed: int = 16) -> tuple[list[str], list[str]]:  # fmt: skip
    """(corpus, queries): the distinct texts the sinks embed for ``trajectories`` generated trajectories
    (about 4.5 each), and one recall query and one outcome query per task drawn (2 per 10 trajectories)."""
    rng = random.Random(seed)
    assembler = Assembler(settings, codec)
    corpus: dict[str, None] = {}
    queries: dict[str, None] = {}
    for n in range(trajectories):
        template, paraphrase = _TASKS[n % len(_TASKS)]
        values = _fill(template, rng)
        tid, events = _events(codec, template.format(**values), rng)
        for value in _assembled(assembler, settings, tid, events):
            view = TrajectoryView.from_bytes(value, codec)
            corpus[trajectory_text(view)] = None
            for point in decision_points(view):
                corpus[decision_text(point.state, point.action)] = None
        if n % 10 == 0:
            asked = paraphrase.format(**values)
            queries[f"task: {asked}"] = None  # as Recall.similar asks
            action = f'{rng.choice(_TOOLS)}(id="{rng.randrange(1, 9999)}")'
            queries[decision_text(state_text(asked, []), action)] = None  # as Recall.predict_outcome asks
    return list(corpus), list(queries)


def top_k(corpus: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Per query, the indices of its ``k`` nearest corpus vectors (cosine: the vectors are normalised)."""
    scores = queries @ corpus.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)


Vectors = npt.NDArray[np.float32]


def neighbour_agreement(reference: tuple[Vectors, Vectors], candidate: tuple[Vectors, Vectors], k: int = 5) -> float:
    """Mean over queries of the share of the reference's top ``k`` (corpus, queries) that the candidate's top
    ``k`` holds too."""
    ours, theirs = top_k(*reference, k), top_k(*candidate, k)
    shared = [len(set(a) & set(b)) / k for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)]
    return float(np.mean(shared))


def cosines(a: Sequence[npt.NDArray[np.float32]] | npt.NDArray[np.float32],
            b: Sequence[npt.NDArray[np.float32]] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:  # fmt: skip
    """The cosine of each pair of normalised vectors."""
    return np.asarray(np.sum(np.asarray(a) * np.asarray(b), axis=1), dtype=np.float32)
