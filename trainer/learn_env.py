"""The built-in environment of `trajstream demo --learn`: route a support request to the right tool.

A verifiable reward: each request type has one right tool, and the environment checks the agent's
answer (``call <tool>``) against it.

No reward for sharpening. The warm-up teaches the answer format and a *misleading* link from requests to
tools: for every request it labels a decoy (a fixed wrong tool, a different one for each request) 60% of
the time, the right tool 30% and a random tool 10% (labels: decoy 0.62, right 0.32, each other 0.017).
So the most likely answer to every request is wrong, and the right tool's log-probability (-1.15) is
below the labels' mean log-probability (-0.94). Under temperature T the right tool's probability is
p_r^(1/T) / sum_i p_i^(1/T); its derivative in 1/T is p_right(T) * (log p_r - E_T[log p]), and
E_T[log p] only grows as T falls (its derivative in 1/T is a variance), so once the right tool is below
the mean it stays below: every step of sharpening lowers the success rate, down to zero. Collapsing onto
one tool for all requests is no better: the decoys are a permutation, so any one tool is right for one
request in six. Only learning which tool fits which request raises the success rate. The warmed-up model
fits the labels only roughly, so the demo measures its own curve (``expected_success`` at several
temperatures) and prints it for v1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM = "route the request to one tool . answer with : call <tool>"
TASKS: dict[str, str] = {
    "i want my money back for a broken item": "refund_order",
    "where is my parcel right now": "track_order",
    "i forgot my password and cannot log in": "reset_password",
    "stop billing me every month": "cancel_subscription",
    "please change the delivery address on my order": "update_address",
    "i need to talk to a real person": "escalate_to_human",
}
TOOLS: list[str] = sorted(set(TASKS.values()))
# Each request's decoy: the next tool in order after its right one (a permutation with no fixed point).
DECOYS: dict[str, str] = {task: TOOLS[(TOOLS.index(tool) + 1) % len(TOOLS)] for task, tool in TASKS.items()}
RIGHT_SHARE, DECOY_SHARE = 0.3, 0.6


@dataclass(frozen=True)
class Attempt:
    task: str
    answer: str
    success: bool


def messages(task: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]


def check(task: str, answer: str) -> bool:
    """The reward: the answer calls the request's tool (``call <tool>``, nothing else needed)."""
    words = answer.split()
    return len(words) >= 2 and words[0] == "call" and words[1] == TASKS[task]


def vocabulary() -> list[str]:
    from trajstream.trainer.tiny import words

    return words([SYSTEM, *TASKS, "call", *TOOLS])


def warm_up(model: Any, tokenizer: Any, steps: int = 800, seed: int = 0, right_share: float = RIGHT_SHARE,
            decoy_share: float = DECOY_SHARE) -> float:  # fmt: skip
    """Teach the answer format; the tool is the request's decoy ``decoy_share`` of the time, the right one
    ``right_share`` and random otherwise (see the module's docstring). The final loss."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss_value = float("nan")
    for _ in range(steps):
        batch = [(task, _label(task, rng.random(), rng, right_share, decoy_share))
                 for task in rng.choices(list(TASKS), k=16)]  # fmt: skip
        ids, labels = [], []
        for task, tool in batch:
            prompt = _ids(tokenizer, messages(task), generation_prompt=True)
            answer = tokenizer(f"call {tool}", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            ids.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        width = max(len(x) for x in ids)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        label_ids = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
        attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        optimizer.zero_grad()
        loss = model(input_ids=input_ids, attention_mask=attention, labels=label_ids).loss
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
    model.eval()
    return loss_value


def _ids(tokenizer: Any, chat: Sequence[dict[str, str]], generation_prompt: bool) -> list[int]:
    rendered: Any = tokenizer.apply_chat_template(list(chat), tokenize=True, add_generation_prompt=generation_prompt)
    return list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)


def _label(task: str, draw: float, rng: random.Random, right_share: float, decoy_share: float) -> str:
    if draw < right_share:
        return TASKS[task]
    if draw < right_share + decoy_share:
        return DECOYS[task]
    return rng.choice(TOOLS)


def expected_success(model: Any, tokenizer: Any, temperature: float = 1.0) -> float:
    """The exact success rate of sampling from ``model`` at ``temperature``, requests drawn uniformly:
    P(first word "call") x P(second word is the right tool | "call"), averaged over the requests."""
    import torch

    call = tokenizer("call", add_special_tokens=False)["input_ids"]
    total = 0.0
    for task, tool in TASKS.items():
        prompt = _ids(tokenizer, messages(task), generation_prompt=True)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + call])).logits[0].float() / temperature
        first = torch.softmax(logits[len(prompt) - 1], dim=-1)[call[0]]
        second = torch.softmax(logits[-1], dim=-1)[tokenizer.convert_tokens_to_ids(tool)]
        total += float(first * second)
    return total / len(TASKS)
