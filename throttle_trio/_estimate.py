"""Estimating what an LLM request will cost before it is sent.

Providers charge a request's tokens against the limit when it arrives, from an estimate, and
settle to the real usage at the end (Anthropic documents this; OpenAI counts ``max_tokens`` up
front).  A client that reserves the same estimate tracks the server's bucket.  The estimate is
``prompt tokens + max output tokens * n`` (the prompt is processed once, each of the ``n``
choices may use the whole output bound), as providers and OpenAI's own cookbook count it;
prompt tokens come from a counter you can replace with a real tokenizer (the default counts 4
characters per token, rounded up).

No counter but the provider's own is exact, so the transports correct the prompt estimate by
the ratio a :class:`~throttle_trio.TokenRatioLearner` learns per model from the usage the
provider reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RequestCost", "count_tokens_by_chars", "estimate_request_cost"]

#: Costs per metric: ``{"requests": 1, "tokens": ..., "input_tokens": ..., "output_tokens": ...}``.
RequestCost = dict[str, float]

_PER_MESSAGE_OVERHEAD = 4  # role and separators: a few tokens per message on every chat API


def count_tokens_by_chars(text: str) -> int:
    """The default token counter: 4 characters per token, rounded up."""
    return math.ceil(len(text) / 4)


def _texts(value: Any) -> list[str]:
    """Every piece of text in a message content, prompt or input value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        if isinstance(value.get("text"), str):
            return [value["text"]]
        if "content" in value:
            return _texts(value["content"])
        return []
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


def estimate_request_cost(
    body: Mapping[str, Any] | bytes | str,
    *,
    count_tokens: Callable[[str], int] = count_tokens_by_chars,
    default_max_tokens: int = 4096,
) -> RequestCost:
    """Estimate an OpenAI- or Anthropic-style request's cost from its JSON body.

    Reads ``messages`` (chat; string or multi-part contents), ``system`` (Anthropic),
    ``prompt`` (completions), ``input`` (embeddings: no output tokens) and ``tools``; the output
    bound from ``max_completion_tokens``, ``max_tokens`` or ``max_output_tokens`` (else
    ``default_max_tokens``); and ``n`` (choices per prompt).  A body that is not a JSON object
    costs one request and no tokens.

    Args:
        body: the request body, parsed or as bytes/str.
        count_tokens: counts the tokens of a text (bring your tokenizer, e.g. tiktoken's
            ``lambda text: len(encoding.encode_ordinary(text))``: ``encode`` raises on special
            tokens such as ``<|endoftext|>`` in a prompt).
        default_max_tokens: the output bound assumed when the request sets none.

    Returns:
        ``{"requests": 1, "input_tokens": p, "output_tokens": m*n, "tokens": p + m*n}``, where
        ``n`` counts choices (times prompts, for a completions request with a list of them).
    """
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            body = {}
    if not isinstance(body, Mapping):
        return {"requests": 1, "tokens": 0, "input_tokens": 0, "output_tokens": 0}
    prompt = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        prompt += sum(count_tokens(t) for t in _texts(messages))
        prompt += _PER_MESSAGE_OVERHEAD * len(messages)
    for key in ("system", "prompt"):
        prompt += sum(count_tokens(t) for t in _texts(body.get(key)))
    embedding = "input" in body and messages is None and "prompt" not in body
    if embedding:
        value = body["input"]
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            prompt += len(value)  # already tokens
        elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            prompt += sum(len(v) for v in value)
        else:
            prompt += sum(count_tokens(t) for t in _texts(value))
    if body.get("tools"):
        prompt += count_tokens(json.dumps(body["tools"], separators=(",", ":")))
    output = 0
    if not embedding:
        output = default_max_tokens
        for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                output = value
                break
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1
    prompts = body.get("prompt")
    if isinstance(prompts, list) and prompts and not all(isinstance(p, int) for p in prompts):
        choices *= len(prompts)  # completions: n choices for each prompt of a list
    return {
        "requests": 1,
        "input_tokens": prompt,
        "output_tokens": output * choices,
        "tokens": prompt + output * choices,
    }
