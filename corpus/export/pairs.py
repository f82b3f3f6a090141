"""Preference pairs from task groups: the highest- against the lowest-reward attempt at the same prompt.

A pair is what DPO learns from: two replies to one input, one better than the other. Here the input is
the *prompt* of a trajectory: its system message and every message before its first assistant message
(what the agent had been told when it first answered). Trajectories of one task group (``task_key``)
are paired only when their prompts are equal, content record for content record: if the user asked
differently, a difference in reward may come from the question rather than the answer, and DPO would
learn the wrong thing. (The other choice, the group's shared prefix, would put user messages into the
outputs, which neither OpenAI nor Fireworks accepts there.) So a task group with several prompts makes
one candidate pair per prompt.

Of the trajectories with the same (task_key, prompt), the one with the highest reward is preferred and
the one with the lowest is not, when the rewards differ by at least ``margin`` (TRAJSTREAM_EXPORT_PAIR_MARGIN,
default 0.2: on the usual 0..1 scale, success against failure or partial is a preference, entity-score jitter
is not).
Ties are broken by trajectory id and version, so the pair does not depend on the order of reading.

Bounded memory: per (task_key, prompt) only the current highest and lowest are held; every other
trajectory is reported skipped as soon as it is known to lose, with its reason, as is every group that
makes no pair (one trajectory; rewards within the margin; identical first replies).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from trajstream.corpus.export.formats.base import Skip
from trajstream.corpus.read import Message, Trajectory

DEFAULT_MARGIN = 0.2


def prompt_messages(trajectory: Trajectory) -> list[Message]:
    """The messages before the first assistant message (all of them, if it has none)."""
    out = []
    for message in trajectory.messages:
        if message.role == "assistant":
            break
        out.append(message)
    return out


def first_reply(trajectory: Trajectory) -> list[Message]:
    """The first assistant reply: the run of assistant messages from the first one up to the next message
    of another role or the end of its turn (one model call: its text and tool calls); empty when the
    trajectory has no assistant message."""
    for turn in trajectory.turns:
        for start, message in enumerate(turn.messages):
            if message.role == "assistant":
                end = start
                while end < len(turn.messages) and turn.messages[end].role == "assistant":
                    end += 1
                return turn.messages[start:end]
    return []


def _digest(system: str, messages: list[Message]) -> str:
    """Equal prompts have equal digests: the system message and each message's role and content record."""
    doc = [system, [(m.role, m.content) for m in messages]]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _rank(trajectory: Trajectory) -> tuple[float, str, int]:
    return (trajectory.reward, trajectory.trajectory_id, trajectory.version)


@dataclass(frozen=True)
class Pair:
    task_key: str
    preferred: Trajectory
    rejected: Trajectory
    group_size: int  # trajectories with this task key and prompt

    @property
    def margin(self) -> float:
        return self.preferred.reward - self.rejected.reward


@dataclass
class _Group:
    best: Trajectory
    worst: Trajectory
    size: int = 1


def _skip(trajectory: Trajectory, reason: str) -> Skip:
    return Skip(trajectory.trajectory_id, trajectory.version, reason)


def preference_pairs(trajectories: Iterable[Trajectory], margin: float = DEFAULT_MARGIN) -> Iterator[Pair | Skip]:
    """Pairs (sorted by task key, then prompt), each after the skips of the trajectories that lost.

    Every trajectory read comes out once: in a pair, or as a Skip with the reason."""
    if margin < 0:
        raise ValueError(f"a preference margin is at least 0, not {margin}")
    groups: dict[tuple[str, str], _Group] = {}
    for t in trajectories:
        if not first_reply(t):
            yield _skip(t, "no assistant message: no reply to prefer")
            continue
        key = (t.task_key, _digest(t.system_message, prompt_messages(t)))
        group = groups.get(key)
        if group is None:
            groups[key] = _Group(best=t, worst=t)
            continue
        group.size += 1
        if group.best is group.worst:  # a second trajectory: both stay in contention
            group.best, group.worst = max(group.best, t, key=_rank), min(group.best, t, key=_rank)
            continue
        if _rank(t) > _rank(group.best):
            loser, group.best = group.best, t
        elif _rank(t) < _rank(group.worst):
            loser, group.worst = group.worst, t
        else:
            loser = t
        yield _skip(loser, "neither the highest nor the lowest reward of its task group and prompt")
    for key in sorted(groups):
        group = groups[key]
        if group.best is group.worst:
            yield _skip(group.best, "the only trajectory of its task group with this prompt: nothing to pair with")
        elif group.best.reward - group.worst.reward < margin:
            reason = f"its task group's rewards differ by less than the margin {margin:g}"
            yield _skip(group.best, reason)
            yield _skip(group.worst, reason)
        elif [(m.role, m.content) for m in first_reply(group.best)] == [
            (m.role, m.content) for m in first_reply(group.worst)
        ]:
            reason = "the highest- and lowest-reward trajectories of its task group first replied the same"
            yield _skip(group.best, reason)
            yield _skip(group.worst, reason)
        else:
            yield Pair(key[0], group.best, group.worst, group.size)
