"""A tiny chat model and tokenizer built locally from a config, for tests, the CPU demo and benchmarks.

Nothing is downloaded: the tokenizer is a word-level vocabulary over the words it is given (plus the chat
role markers), the model a small Llama initialised from a seed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", *(f"<|{r}|>" for r in ROLES)]
# Renders one message at a time the same way whatever precedes it, so that a conversation's tokens are the
# concatenation of its messages' tokens (what the assistant-only mask relies on).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_WORDS = re.compile(r"\S+")


def words(texts: Iterable[str]) -> list[str]:
    """The vocabulary a word-level tokenizer needs for ``texts``, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in _WORDS.findall(text):
            seen.setdefault(word, None)
    return list(seen)


def build_tokenizer(vocabulary: Iterable[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` with a chat template, splitting on whitespace."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for word in vocabulary:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> Any:
    """A small Llama (``LlamaForCausalLM``) with random weights from ``seed``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=1024,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
