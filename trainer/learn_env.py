"""The built-in environment of `trajstream demo --learn`: route a support request to the right tool.

A verifiable reward: each request type has one right tool, and the environment checks the agent's
answer (``call <tool>``) against it. The demo's model starts knowing the answer format and only a faint
link from requests to tools (its warm-up picks the right tool 30% of the time and a random one
otherwise), so its success rate starts near one in three, and only learning from its own scored
trajectories can raise it.
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


def warm_up(model: Any, tokenizer: Any, steps: int = 800, seed: int = 0, right_share: float = 0.3) -> float:
    """Teach the answer format; the tool is the right one ``right_share`` of the time and random otherwise,
    so the model starts with a faint link from requests to tools for learning to strengthen. The final loss."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss_value = float("nan")
    for _ in range(steps):
        batch = [(task, TASKS[task] if rng.random() < right_share else rng.choice(TOOLS))
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
