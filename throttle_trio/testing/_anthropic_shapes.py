"""What the fake server reads from an Anthropic Messages request and the JSON it answers with.

Pure functions, no I/O, beside :mod:`._openai_shapes` (whose :class:`ParsedRequest` and
tokenizer they share: the cost rule is the server's own, the same for both APIs).  The
request is checked as the Messages API checks it, as far as the fake needs: a JSON object
with ``model`` (a string), ``max_tokens`` (an integer >= 1), ``messages`` (a non-empty array
of ``user``/``assistant`` turns whose ``content`` is a string or an array of blocks), an
optional ``system`` (a string or an array of text blocks) and ``stream``.  A failure raises
:class:`~._openai_shapes.BadRequest`, answered with 400 and Anthropic's error shape.

The cost, on arrival: input tokens are the characters of the system prompt and of every text
block divided by 4 (rounded up per text); output tokens are bounded by ``max_tokens``.

Shapes, as the ``anthropic`` SDK's types (``Message``, ``RawMessageStreamEvent``) read them:

* a response is a ``message`` object with one ``text`` content block and
  ``usage: {input_tokens, output_tokens, ...}``;
* a stream is ``message_start`` (usage: the input tokens and 1 output token),
  ``content_block_start``, ``ping``, ``content_block_delta``..., ``content_block_stop``,
  ``message_delta`` (``stop_reason`` and ``usage: {output_tokens}``, the total) and
  ``message_stop``, each an SSE event with ``event:`` and ``data:`` lines;
* an error is ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from ._openai_shapes import BadRequest, ParsedRequest, count_text_tokens, encode_json, filler_text

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "anthropic_error_body",
    "message_body",
    "message_stream_frames",
    "parse_messages_request",
]

ANTHROPIC_ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
"""The ``error.type`` Anthropic sends with each status."""

_ROLES: Final = frozenset({"user", "assistant"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _block_texts(content: object, field: str) -> list[str]:
    """The texts of a string or of an array of content blocks (non-text blocks count 0)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise BadRequest(f"{field}: Input should be a valid string or a list of blocks", field)
    texts: list[str] = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadRequest(f"{field}.{index}: Input should be an object with a 'type'", field)
        if block["type"] == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{field}.{index}.text: Field required", field)
            texts.append(text)
    return texts


def parse_messages_request(raw: bytes) -> ParsedRequest:
    """Read and check a ``POST /v1/messages`` body.

    Args:
        raw: the body as received.

    Raises:
        BadRequest: invalid JSON, not an object, or a missing or invalid field.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("There was an issue with your request body: invalid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise BadRequest("model: Field required", "model")
    if not isinstance(model, str) or not model:
        raise BadRequest(f"model: Input should be a non-empty string, got {model!r}", "model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required", "max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise BadRequest(
            f"max_tokens: Input should be an integer >= 1, got {max_tokens!r}", "max_tokens"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required", "messages")
    texts: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(
                f"messages.{index}.role: Input should be 'user' or 'assistant'", "messages"
            )
        if "content" not in message:
            raise BadRequest(f"messages.{index}.content: Field required", "messages")
        texts += _block_texts(message["content"], f"messages.{index}.content")
    system = body.get("system")
    if system is not None:
        texts += _block_texts(system, "system")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"stream: Input should be a valid boolean, got {stream!r}", "stream")
    return ParsedRequest(
        "messages",
        model,
        prompt_tokens=sum(count_text_tokens(text) for text in texts),
        max_tokens=int(max_tokens),
        stream=stream,
    )


def anthropic_error_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    """Anthropic's error envelope for ``status`` (see :data:`ANTHROPIC_ERROR_TYPES`)."""
    error_type = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _stop_reason(request: ParsedRequest, output_tokens: int) -> str:
    return "max_tokens" if output_tokens >= request.max_tokens else "end_turn"


def _usage(request: ParsedRequest, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": request.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _message(
    request: ParsedRequest,
    message_id: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def message_body(request: ParsedRequest, *, message_id: str, output_tokens: int) -> dict[str, Any]:
    """The whole ``message`` object answering a non-streamed request.

    Args:
        request: the parsed request.
        message_id: the ``id`` field (``msg_...``).
        output_tokens: tokens generated (at most ``max_tokens``).
    """
    content = [{"type": "text", "text": filler_text(output_tokens)}]
    stop = _stop_reason(request, output_tokens)
    return _message(request, message_id, content, stop, _usage(request, output_tokens))


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + encode_json({"type": kind, **data}) + b"\n\n"


def message_stream_frames(
    request: ParsedRequest, *, message_id: str, output_tokens: int, chunk_tokens: int
) -> list[bytes]:
    """The server-sent events of a streamed message, ``message_stop`` last.

    Args:
        request: the parsed request (``stream`` true).
        message_id: the message's ``id``.
        output_tokens: tokens generated (at most ``max_tokens``).
        chunk_tokens: tokens per ``content_block_delta`` (>= 1).
    """
    start_usage = _usage(request, min(1, output_tokens))
    frames = [
        _event("message_start", {"message": _message(request, message_id, [], None, start_usage)}),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        _event("ping", {}),
    ]
    for start in range(0, output_tokens, chunk_tokens):
        piece = filler_text(min(chunk_tokens, output_tokens - start), start)
        if start:
            piece = " " + piece
        delta = {"type": "text_delta", "text": piece}
        frames.append(_event("content_block_delta", {"index": 0, "delta": delta}))
    stop = {"stop_reason": _stop_reason(request, output_tokens), "stop_sequence": None}
    frames += [
        _event("content_block_stop", {"index": 0}),
        _event("message_delta", {"delta": stop, "usage": {"output_tokens": output_tokens}}),
        _event("message_stop", {}),
    ]
    return frames
