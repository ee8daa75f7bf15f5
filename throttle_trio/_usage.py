"""Reading the real usage out of an LLM response body, JSON or server-sent events.

Pure and incremental: :class:`UsageReader` is fed the *raw* body chunks as they pass through
the transport (decompressing gzip, deflate and, if a brotli module is installed, br) and says
at the end what the response consumed, per metric:

=====================  ======================================  ===============================
format                 where the usage is                      metrics
=====================  ======================================  ===============================
OpenAI JSON            ``usage.prompt_tokens``,                ``input_tokens``,
                       ``usage.completion_tokens``             ``output_tokens``, ``tokens``
OpenAI SSE             the last chunk's ``usage`` (sent only    same
                       with ``stream_options.include_usage``)
Anthropic JSON         ``usage.input_tokens`` +                 same (cache writes count
                       ``usage.cache_creation_input_tokens``,   toward ITPM, cache reads do
                       ``usage.output_tokens``                  not, so they are left out)
Anthropic SSE          ``message_start``'s ``message.usage``,   same
                       then ``message_delta``'s ``usage``
=====================  ======================================  ===============================

A body it cannot read (unknown encoding, not JSON, no usage, larger than ``max_body``) gives
``None``: the reservation is then settled at the estimate.

Numbers are bounded: a count above :data:`MAX_REPORTED_TOKENS` (ten million tokens, beyond any
model's context window and output together) is garbage, and settling it would leave a debt
that blocks the key for years (or overflow a float: JSON integers have no limit).  It is
clamped to that bound, logged (a warning the first time in a process, at debug level after)
and counted (:attr:`UsageReader.clamped`; the transports add it to the throttle's statistics).
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import TYPE_CHECKING, Any, Final, final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_REPORTED_TOKENS", "UsageReader", "usage_from_json"]

logger = logging.getLogger("throttle_trio")

#: The largest count of tokens one response may report; a larger one is clamped to it.
MAX_REPORTED_TOKENS: Final = 10_000_000
_warned = False  # the first clamp in a process is a warning, the others are debug lines

_MAX_BODY = 16 * 1024 * 1024  # bytes kept to parse a JSON body at the end


def _log_clamp(field: str, value: int) -> None:
    global _warned  # once per process, by design
    level = logging.DEBUG if _warned else logging.WARNING
    _warned = True
    if logger.isEnabledFor(level):
        shown = str(value) if value < 10**30 else f"a {len(str(value))}-digit number"
        logger.log(
            level,
            "a response reported usage %s = %s, above the bound of %d tokens: clamped to it "
            "(further clamps are logged at debug level)",
            field,
            shown,
            MAX_REPORTED_TOKENS,
        )


def usage_from_json(
    document: Any, *, on_clamp: Callable[[str, int], None] | None = None
) -> dict[str, float] | None:
    """The usage in a parsed OpenAI or Anthropic response (or SSE event), or ``None``.

    Args:
        document: the parsed JSON.
        on_clamp: called with the field and its value for each count above
            :data:`MAX_REPORTED_TOKENS` (clamped to it); by default the clamp is only logged.
    """

    def _int(value: Any, field: str) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        if value > MAX_REPORTED_TOKENS:
            _log_clamp(field, value)
            if on_clamp is not None:
                on_clamp(field, value)
            return MAX_REPORTED_TOKENS
        return value

    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        message = document.get("message")  # Anthropic's message_start event
        usage = message.get("usage") if isinstance(message, dict) else None
        if not isinstance(usage, dict):
            return None
    found: dict[str, float] = {}
    prompt = _int(usage.get("prompt_tokens"), "prompt_tokens")
    completion = _int(usage.get("completion_tokens"), "completion_tokens")
    if prompt is None:
        prompt = _int(usage.get("input_tokens"), "input_tokens")
        # Anthropic's input_tokens leave out the prompt cache; writing to it counts toward the
        # input-tokens limit, reading from it does not.
        written = _int(usage.get("cache_creation_input_tokens"), "cache_creation_input_tokens")
        if prompt is not None and written:
            prompt = min(prompt + written, MAX_REPORTED_TOKENS)
    if completion is None:
        completion = _int(usage.get("output_tokens"), "output_tokens")
    if prompt is not None:
        found["input_tokens"] = prompt
    if completion is not None:
        found["output_tokens"] = completion
    total = _int(usage.get("total_tokens"), "total_tokens")
    if total is None and (prompt is not None or completion is not None):
        total = (prompt or 0) + (completion or 0)  # at most twice the bound
    if total is not None:
        found["tokens"] = total
    return found or None


def _decompressor(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return False
        return brotli.Decompressor()
    return False  # unknown: cannot read the usage


@final
class UsageReader:
    """Follows a response body as it streams and finds its usage.

    Args:
        content_type: the response's ``Content-Type``.
        content_encoding: the response's ``Content-Encoding`` (raw chunks are decoded here).
        max_body: the most decoded bytes of a JSON body kept for parsing.
    """

    __slots__ = (
        "_buffer",
        "_decoder",
        "_events",
        "_max_body",
        "_pending",
        "_usable",
        "_usage",
        "clamped",
    )

    def __init__(
        self, content_type: str, content_encoding: str = "", max_body: int = _MAX_BODY
    ) -> None:
        self._events = "text/event-stream" in content_type.lower()
        decoder = _decompressor(content_encoding)
        self._usable = decoder is not False
        self._decoder = decoder or None
        self._buffer = bytearray()  # a JSON body
        self._pending = b""  # an incomplete SSE line
        self._usage: dict[str, float] = {}
        self._max_body = max_body
        self.clamped = 0
        """Counts above :data:`MAX_REPORTED_TOKENS` clamped so far."""

    def _on_clamp(self, field: str, value: int) -> None:
        self.clamped += 1

    def feed(self, chunk: bytes) -> None:
        """Pass one raw body chunk."""
        if not self._usable or not chunk:
            return
        if self._decoder is not None:
            try:
                chunk = self._decoder.decompress(chunk)
            except Exception:  # a corrupt body: give up on the usage, not on the response
                self._usable = False
                return
        if self._events:
            self._feed_events(chunk)
        elif len(self._buffer) + len(chunk) <= self._max_body:
            self._buffer += chunk
        else:
            self._usable = False

    def _feed_events(self, chunk: bytes) -> None:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._event_line(line)

    def _event_line(self, line: bytes) -> None:
        line = line.strip()
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        found = usage_from_json(event, on_clamp=self._on_clamp)
        if found:
            self._usage.update(found)
            if "input_tokens" in self._usage and "output_tokens" in self._usage:
                # Anthropic reports input and output in different events.
                self._usage["tokens"] = self._usage["input_tokens"] + self._usage["output_tokens"]

    def usage(self) -> dict[str, float] | None:
        """The usage found in the body so far, or ``None``."""
        if not self._usable:
            return None
        if self._events:
            if self._pending:
                self._event_line(self._pending)
                self._pending = b""
            return dict(self._usage) or None
        try:
            return usage_from_json(json.loads(bytes(self._buffer)), on_clamp=self._on_clamp)
        except ValueError:
            return None
