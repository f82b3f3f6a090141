"""A turn's recorded token log-probabilities in OpenAI's ``logprobs.content`` shape, and its token ids.

Only what the serving model returned is given: a turn without log-probabilities has none (never zeros), and
token ids are given only when every token's id was recorded (a list with holes is no token-id sequence a
trainer could use; the ids are not guessed from the text).
"""

from __future__ import annotations

from typing import Any

from trajstream.corpus.read import Turn


def token_ids(turn: Turn) -> list[int] | None:
    """Every token's id, or None when any was not recorded (or the turn recorded none)."""
    ids = turn.token_ids
    if not turn.logprobs or len(ids) != len(turn.logprobs) or any(i is None for i in ids):
        return None
    return [int(i) for i in ids if i is not None]


def logprob_content(turn: Turn, *, ids_as_tokens: bool = False) -> list[dict[str, Any]] | None:
    """``[{"token", "bytes", "logprob", "top_logprobs"}]`` per token, or None when none were recorded.

    With ``ids_as_tokens`` (ART), a token whose id was recorded is written ``token_id:<id>``, vLLM's
    ``return_tokens_as_token_ids`` convention, which ART's tokenizer reads back as the exact id; the text is
    kept in ``bytes`` (UTF-8), as OpenAI gives it.
    """
    if not turn.logprobs:
        return None
    ids = token_ids(turn) if ids_as_tokens else None
    texts = turn.logprob_tokens if len(turn.logprob_tokens) == len(turn.logprobs) else [""] * len(turn.logprobs)
    return [
        {"token": f"token_id:{ids[i]}" if ids is not None else text, "bytes": list(text.encode("utf-8")),
         "logprob": logprob, "top_logprobs": []}
        for i, (text, logprob) in enumerate(zip(texts, turn.logprobs, strict=True))
    ]  # fmt: skip
