"""What the fake server reads from an OpenAI request and the JSON it answers with.

Pure functions, no I/O.  A request body is checked as strictly as the fake needs (a JSON
object, the fields each endpoint requires, sane ``max_tokens`` and ``n``); a failure raises
:class:`BadRequest`, which the server answers with 400 and OpenAI's error shape.

The cost of a request, as the server estimates it on arrival (its own rule, not the
library's): prompt tokens are the characters of every text divided by 4, rounded up per text
(token arrays count their length); the output bound is ``max_completion_tokens`` or
``max_tokens`` (else the server's default) for each generated choice, so the estimate is
``prompt + max_tokens * n * prompts``.  Embeddings have no output.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, final

__all__ = [
    "BadRequest",
    "Endpoint",
    "ParsedRequest",
    "count_text_tokens",
    "encode_json",
    "error_body",
    "filler_text",
    "parse_request",
    "response_body",
    "stream_frames",
]

Endpoint = Literal["chat", "completions", "embeddings", "messages"]
"""The APIs the server answers (``messages``: Anthropic's, in :mod:`._anthropic_shapes`)."""

_MAX_N: Final = 128
_MAX_DIMENSIONS: Final = 4096
_WORDS: Final = (
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed"),
    *("do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua"),
)


class BadRequest(Exception):
    """The request body is not one the endpoint accepts (answered with 400).

    Args:
        message: what is wrong, for the error body.
        param: the offending field, if one is.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@final
@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """What the server needs from a valid request.

    Attributes:
        endpoint: which API it called.
        model: the model asked for (the server's default when absent).
        prompt_tokens: input tokens (characters / 4, rounded up per text; token arrays count
            their length), before the server's ``token_factor``.
        max_tokens: the output bound per choice (0 for embeddings).
        prompts: prompts in the request (completions accept a list; else 1).
        n: choices per prompt.
        stream: answer as server-sent events.
        include_usage: send a final chunk with ``usage`` (``stream_options.include_usage``).
        inputs: the texts (or token arrays, as text) to embed.
        dimensions: embedding dimensions.
        array_tokens: the part of ``prompt_tokens`` given as token arrays: already the
            provider's tokens, which no tokenizer factor scales.
    """

    endpoint: Endpoint
    model: str
    prompt_tokens: int
    max_tokens: int
    prompts: int = 1
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    inputs: tuple[str, ...] = ()
    dimensions: int = 0
    array_tokens: int = 0

    @property
    def choices(self) -> int:
        """Outputs generated: ``n`` per prompt (0 for embeddings)."""
        return 0 if self.endpoint == "embeddings" else self.n * self.prompts

    @property
    def estimate(self) -> int:
        """Tokens charged at arrival: ``prompt_tokens + max_tokens * choices``."""
        return self.prompt_tokens + self.max_tokens * self.choices


def count_text_tokens(text: str) -> int:
    """The fake's tokenizer: 4 characters per token, rounded up."""
    return math.ceil(len(text) / 4)


def _content_texts(content: object) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
    return []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(body: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value) or not 1 <= value <= maximum:
        raise BadRequest(f"{name} must be an integer from 1 to {maximum}, got {value!r}", name)
    return int(value)


def _token_array(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(item) for item in value)


def _prompt_list(value: object, name: str) -> list[str | list[int]]:
    """A prompt or embedding input: a string, a token array, or a non-empty list of them."""
    if isinstance(value, str) or (_token_array(value) and value):
        return [value]  # type: ignore[list-item]  # narrowed by _token_array
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, str) or (_token_array(item) and item) for item in value)
    ):
        return list(value)
    raise BadRequest(
        f"{name} must be a string, an array of tokens, or a non-empty array of them", name
    )


def _prompt_tokens(prompt: str | list[int]) -> int:
    return count_text_tokens(prompt) if isinstance(prompt, str) else len(prompt)


def _array_tokens(prompts: list[str | list[int]]) -> int:
    return sum(len(prompt) for prompt in prompts if not isinstance(prompt, str))


def parse_request(
    endpoint: Endpoint,
    raw: bytes,
    *,
    default_model: str,
    default_max_tokens: int,
    default_dimensions: int,
) -> ParsedRequest:
    """Read and check a request body for ``endpoint``.

    Args:
        endpoint: the API called.
        raw: the body as received.
        default_model: the model when the body names none.
        default_max_tokens: the output bound when the body sets none (tokens per choice).
        default_dimensions: embedding dimensions when the body sets none.

    Raises:
        BadRequest: invalid JSON, not an object, or a missing or invalid field.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise BadRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise BadRequest(f"model must be a non-empty string, got {model!r}", "model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest(f"stream must be a boolean, got {stream!r}", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage") is True)

    if endpoint == "embeddings":
        inputs = _prompt_list(body.get("input"), "input")
        dimensions = _positive_int(body, "dimensions", default_dimensions, _MAX_DIMENSIONS)
        return ParsedRequest(
            endpoint,
            model,
            prompt_tokens=sum(_prompt_tokens(item) for item in inputs),
            max_tokens=0,
            array_tokens=_array_tokens(inputs),
            prompts=len(inputs),
            inputs=tuple(item if isinstance(item, str) else json.dumps(item) for item in inputs),
            dimensions=dimensions,
        )

    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty array of messages", "messages")
        texts: list[str] = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(
                    f"messages[{index}] must be an object with a string 'role'", "messages"
                )
            texts += _content_texts(message.get("content"))
        prompt_tokens = sum(count_text_tokens(text) for text in texts)
        array_tokens = 0
        prompts = 1
        bound_name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    else:
        prompt_list = _prompt_list(body.get("prompt"), "prompt")
        prompt_tokens = sum(_prompt_tokens(prompt) for prompt in prompt_list)
        array_tokens = _array_tokens(prompt_list)
        prompts = len(prompt_list)
        bound_name = "max_tokens"
    max_tokens = _positive_int(body, bound_name, default_max_tokens, 2**31 - 1)
    n = _positive_int(body, "n", 1, _MAX_N)
    return ParsedRequest(
        endpoint,
        model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        prompts=prompts,
        n=n,
        stream=stream,
        include_usage=include_usage,
        array_tokens=array_tokens,
    )


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(
    message: str, error_type: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def filler_text(tokens: int, start: int = 0) -> str:
    """``tokens`` words of filler (about one token each), from word number ``start``."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(start, start + tokens))


def _embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(zlib.crc32(text.encode()))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


def _usage(request: ParsedRequest, completion_tokens: int) -> dict[str, int]:
    if request.endpoint == "embeddings":
        return {"prompt_tokens": request.prompt_tokens, "total_tokens": request.prompt_tokens}
    total_completion = completion_tokens * request.choices
    return {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": total_completion,
        "total_tokens": request.prompt_tokens + total_completion,
    }


def _finish_reason(request: ParsedRequest, completion_tokens: int) -> str:
    return "length" if completion_tokens >= request.max_tokens else "stop"


def response_body(
    request: ParsedRequest, *, response_id: str, created: int, completion_tokens: int
) -> dict[str, Any]:
    """The whole JSON response to a non-streamed request.

    Args:
        request: the parsed request.
        response_id: the ``id`` field (``chatcmpl-...``, ``cmpl-...``).
        created: the ``created`` field, UNIX seconds.
        completion_tokens: tokens generated for each choice.
    """
    usage = _usage(request, completion_tokens)
    if request.endpoint == "embeddings":
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": _embedding(text, request.dimensions),
                }
                for index, text in enumerate(request.inputs)
            ],
            "model": request.model,
            "usage": usage,
        }
    finish = _finish_reason(request, completion_tokens)
    text = filler_text(completion_tokens)
    if request.endpoint == "chat":
        choices: list[dict[str, Any]] = [
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            for index in range(request.choices)
        ]
        kind = "chat.completion"
    else:
        choices = [
            {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            for index in range(request.choices)
        ]
        kind = "text_completion"
    return {
        "id": response_id,
        "object": kind,
        "created": created,
        "model": request.model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
        "usage": usage,
    }


def _sse(value: object) -> bytes:
    return b"data: " + encode_json(value) + b"\n\n"


def stream_frames(
    request: ParsedRequest,
    *,
    response_id: str,
    created: int,
    completion_tokens: int,
    chunk_tokens: int,
) -> list[bytes]:
    """The server-sent events of a streamed chat or text completion, ``data: [DONE]`` last.

    Chat streams open with a role delta for each choice; content follows ``chunk_tokens``
    tokens at a time, choices interleaved; each choice's last chunk carries its
    ``finish_reason``.  With ``include_usage`` every chunk has ``"usage": null`` and a final
    chunk has no choices and the usage, as OpenAI sends them.

    Args:
        request: the parsed request (``stream`` true; not embeddings).
        response_id: the ``id`` of every chunk.
        created: the ``created`` field, UNIX seconds.
        completion_tokens: tokens generated for each choice.
        chunk_tokens: tokens per content chunk (>= 1).
    """
    chat = request.endpoint == "chat"
    base: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": request.model,
        "system_fingerprint": "fp_fake",
    }
    if request.include_usage:
        base["usage"] = None

    def chunk(index: int, text: str | None, finish: str | None) -> bytes:
        if chat:
            delta: dict[str, Any] = {} if text is None else {"content": text}
            if text == "" and finish is None:
                delta = {"role": "assistant", "content": ""}
            choice: dict[str, Any] = {"index": index, "delta": delta}
        else:
            choice = {"text": text or "", "index": index}
        choice |= {"logprobs": None, "finish_reason": finish}
        return _sse(base | {"choices": [choice]})

    frames: list[bytes] = []
    if chat:
        frames += [chunk(index, "", None) for index in range(request.choices)]
    for start in range(0, completion_tokens, chunk_tokens):
        piece = filler_text(min(chunk_tokens, completion_tokens - start), start)
        if start:
            piece = " " + piece
        frames += [chunk(index, piece, None) for index in range(request.choices)]
    finish = _finish_reason(request, completion_tokens)
    frames += [chunk(index, None, finish) for index in range(request.choices)]
    if request.include_usage:
        frames.append(_sse(base | {"choices": [], "usage": _usage(request, completion_tokens)}))
    frames.append(b"data: [DONE]\n\n")
    return frames
