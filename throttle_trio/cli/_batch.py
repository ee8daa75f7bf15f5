"""``throttle-trio batch``: run a JSONL batch file against an OpenAI-compatible endpoint."""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit

import anyio
import httpx2

from .._batch import amap
from .._exceptions import ThrottleTrioError
from .._presets import anthropic_throttle, openai_throttle
from .._registry import api_key_hash
from .._retry import RetryAfterTooLong, RetryPolicy
from .._shell import shell_for
from .._throttle import Throttle
from ..httpx2 import ThrottledTransport
from ..policy.sliding_window import SlidingWindow
from ..policy.token_bucket import TokenBucket
from ._files import (
    BatchFileError,
    BatchRequest,
    OutputFile,
    cannot_write,
    completed_ids,
    read_requests,
)
from ._progress import Progress

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

    from ..policy.base import RatePolicy
    from ..redis import RedisThrottle

__all__ = ["BatchOptions", "BatchSummary", "run_batch_file"]

logger = logging.getLogger("throttle_trio.cli")

ANTHROPIC_VERSION = "2023-06-01"  # the Messages API's version header, as the SDKs send it


@dataclass(frozen=True)
class BatchOptions:
    """What ``throttle-trio batch`` was asked to do."""

    input: Path
    output: Path
    base_url: str
    rpm: float | None
    tpm: float | None
    burst_seconds: float | None = None
    max_concurrent: int = 64
    api_key: str | None = None
    max_attempts: int = 5
    refund_unused: bool = True
    grace: float = 30.0
    timeout: float = 600.0
    strict: bool = False
    max_retry_after: float | None = None  # None: RetryPolicy's default
    redis_url: str | None = None  # share the limits through Redis (a fleet of batch processes)
    name: str | None = None  # the shared throttle's name (default: from the URL and the key)
    provider: Literal["openai", "anthropic"] | None = None  # a preset instead of the buckets
    window_seconds: float | None = None  # sliding windows of this many seconds of each rate
    itpm: float | None = None  # Anthropic's input tokens per minute (with provider="anthropic")
    otpm: float | None = None  # Anthropic's output tokens per minute (with provider="anthropic")


@dataclass
class BatchSummary:
    """What a run did.

    Attributes:
        malformed: input lines skipped because they cannot run (each reported on its own).
        retry_after_too_long: requests the server asked to wait longer than
            ``max_retry_after`` (``RetryAfterTooLong``): not written, so a rerun sends them;
            the run stopped at the first.
        longest_retry_after: the longest wait (seconds) such a server asked for.
        max_retry_after: the cap (seconds) those waits exceeded.
        output_error: why the results could not be written (``"cannot write PATH: ..."``);
            the run stopped there.
    """

    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    not_done: int = 0
    rate_limited: int = 0
    tokens: float = 0.0
    elapsed: float = 0.0
    malformed: int = 0
    retry_after_too_long: int = 0
    longest_retry_after: float = 0.0
    max_retry_after: float = 0.0
    unreachable: str | None = None
    output_error: str | None = None
    interrupted: bool = False

    def report(self, rpm: float | None, tpm: float | None) -> str:
        minutes = max(self.elapsed, 1e-9) / 60
        lines = [
            f"requests: {self.total} in the file, {self.skipped} already done, "
            f"{self.succeeded} succeeded, {self.failed} failed, {self.not_done} not done"
        ]
        if self.malformed:
            lines.append(f"{_lines(self.malformed)} skipped (malformed)")
        lines.append(
            f"429s seen: {self.rate_limited}; tokens used: {self.tokens:,.0f}; "
            f"elapsed: {self.elapsed:.1f} s"
        )
        sent = self.succeeded + self.failed
        if sent:
            rate = f"{sent / minutes:,.0f} requests/min"
            rate += f" (limit {rpm:,.0f})" if rpm else ""
            rate += f", {self.tokens / minutes:,.0f} tokens/min"
            rate += f" (limit {tpm:,.0f})" if tpm else ""
            lines.append("throughput: " + rate)
        if self.output_error:
            lines.append("stopped: the results cannot be written; rerun the same command to resume")
        elif self.unreachable:
            lines.append(f"stopped: cannot reach the server ({self.unreachable}); rerun to resume")
        elif self.retry_after_too_long:
            lines.append(
                f"stopped: the server asked to wait {self.longest_retry_after:g} s, more than the "
                f"{self.max_retry_after:g} s cap (--max-retry-after); rerun later to resume"
            )
        elif self.interrupted:
            lines.append("interrupted: rerun the same command to resume")
        return "\n".join(lines)


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


def _endpoint(base_url: str, url: str) -> str:
    """The full URL of a batch line's ``url`` (``/v1/chat/completions``) under ``base_url``."""
    base = httpx2.URL(base_url)
    path = base.path.rstrip("/")
    if path.endswith("/v1") and url.startswith("/v1/"):
        return str(base.copy_with(path=path + url[3:]))
    return str(base.copy_with(path=url))


def _limits(options: BatchOptions, *, resuming: bool) -> dict[str, RatePolicy]:
    """``--rpm`` and ``--tpm`` as token buckets (``--burst``) or sliding windows (``--window``)."""
    limits: dict[str, RatePolicy] = {}
    for name, per_minute in (("requests", options.rpm), ("tokens", options.tpm)):
        if not per_minute:
            continue
        if options.window_seconds is not None:
            # At least one unit per window, or nothing could ever go.
            window = max(options.window_seconds, 60 / per_minute)
            limits[name] = SlidingWindow(per_minute / 60 * window, window=window)
            continue
        burst = per_minute
        if options.burst_seconds is not None:
            burst = max(1.0, per_minute / 60 * options.burst_seconds)
        limits[name] = TokenBucket(
            per_minute, per=60.0, burst=burst, initial_tokens=0 if resuming else None
        )
    return limits


def make_throttle(options: BatchOptions, *, resuming: bool) -> Throttle:
    """The throttle for a run: a provider's preset, or ``--rpm``/``--tpm`` as asked.

    A resumed run starts with drained buckets (the provider's may still be drained by the run
    that stopped); sliding windows hold only the last seconds, long gone by then.
    """
    if options.provider == "openai":
        assert options.rpm is not None  # the command line requires them with --provider
        assert options.tpm is not None
        return openai_throttle(
            rpm=options.rpm, tpm=options.tpm, max_concurrent=options.max_concurrent
        )
    if options.provider == "anthropic":
        assert options.rpm is not None
        assert options.itpm is not None
        assert options.otpm is not None
        return anthropic_throttle(
            rpm=options.rpm,
            input_tpm=options.itpm,
            output_tpm=options.otpm,
            max_concurrent=options.max_concurrent,
            warmup=60.0 if resuming else 0.25,  # a minute below full: drained
        )
    return Throttle(
        _limits(options, resuming=resuming),
        max_concurrent=options.max_concurrent,
        refund_unused=options.refund_unused,
    )


def shared_name(options: BatchOptions) -> str:
    """The name processes share a throttle by: ``--name``, else the API's host and a hash of
    the API key (so that processes calling the same API with the same key share its limits,
    and the key itself never reaches Redis)."""
    if options.name is not None:
        return options.name
    host = urlsplit(options.base_url).hostname or "api"
    return f"batch-{host}-{api_key_hash(options.api_key or '')}"


@asynccontextmanager
async def open_throttle(
    options: BatchOptions, *, resuming: bool
) -> AsyncIterator[Throttle | RedisThrottle]:
    """The run's throttle: a local one, or with ``redis_url`` one shared through Redis (a
    shared bucket is as the fleet left it: a resumed run does not drain it)."""
    if options.redis_url is None:
        yield make_throttle(options, resuming=resuming)
        return
    from ..redis import RedisThrottle, client_from_url  # the redis extra, only when asked

    client = client_from_url(options.redis_url)
    # The same limits, shared: buckets as GCRA, sliding windows (--window, the OpenAI preset's
    # slices) as windows in Redis; a bucket's initial level and a window's warm-up stay local.
    local = make_throttle(options, resuming=False)
    limits = {
        name: policy
        for name, policy in local.limits.items()
        if isinstance(policy, TokenBucket | SlidingWindow)
    }
    assert len(limits) == len(local.limits)  # what the command line makes
    async with client:
        yield RedisThrottle(
            client,
            shared_name(options),
            limits,
            max_concurrent=options.max_concurrent,
            refund_unused=local.refund_unused,
            adaptive=options.provider is not None,
        )


async def run_batch_file(options: BatchOptions, *, stream: TextIO | None = None) -> BatchSummary:
    """Run the batch; see ``throttle-trio batch --help``.

    Messages and progress go to ``stream`` (``sys.stderr`` at the time of the call by default).

    Raises:
        BatchFileError: before anything is sent: the input cannot be read or run (a duplicate
            ``custom_id``; with ``strict``, a malformed line), or the output cannot be opened.
            A result that cannot be written later stops the run instead, with
            :attr:`BatchSummary.output_error`.
    """
    retry = (
        RetryPolicy(max_attempts=options.max_attempts)
        if options.max_retry_after is None
        else RetryPolicy(max_attempts=options.max_attempts, max_retry_after=options.max_retry_after)
    )
    summary = BatchSummary(max_retry_after=retry.max_retry_after)
    messages = sys.stderr if stream is None else stream
    requests, problems = read_requests(options.input)
    for problem in problems:
        messages.write(f"{options.input}: {problem}\n")
    summary.malformed = sum(problem.skipped for problem in problems)
    if options.strict and summary.malformed:
        raise BatchFileError(
            f"{_lines(summary.malformed)} skipped (malformed); nothing was sent (--strict)"
        )
    done = completed_ids(options.output)
    todo = [request for request in requests if request.custom_id not in done]
    summary.total, summary.skipped = len(requests), len(requests) - len(todo)
    if not todo:
        return summary
    output = OutputFile(options.output)  # before anything is sent
    try:
        await _run(
            options, todo, output, summary, resuming=bool(done), retry=retry, stream=messages
        )
    finally:
        try:
            output.close()
        except OSError as exc:  # a file system that reports write errors at close (NFS)
            summary.output_error = summary.output_error or cannot_write(output.path, exc)
    return summary


async def _run(
    options: BatchOptions,
    todo: list[BatchRequest],
    output: OutputFile,
    summary: BatchSummary,
    *,
    resuming: bool,
    retry: RetryPolicy,
    stream: TextIO,
) -> None:
    async with open_throttle(options, resuming=resuming) as throttle:
        await _run_with(throttle, options, todo, output, summary, retry=retry, stream=stream)


async def _run_with(
    throttle: Throttle | RedisThrottle,
    options: BatchOptions,
    todo: list[BatchRequest],
    output: OutputFile,
    summary: BatchSummary,
    *,
    retry: RetryPolicy,
    stream: TextIO,
) -> None:
    shell = shell_for(throttle)
    # The batch lane: an interactive program on the same throttle (a Redis one shared with
    # this batch) goes before the batch's backlog.
    transport = ThrottledTransport(
        httpx2.AsyncHTTPTransport(), throttle=throttle, retry=retry, lane="batch"
    )
    headers = _auth_headers(options)
    progress = Progress(total=len(todo), stream=stream)
    stop = anyio.Event()
    started = time.monotonic()

    async def send(request: BatchRequest) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
        try:
            response = await client.post(
                _endpoint(options.base_url, request.url), json=request.body
            )
        except httpx2.ConnectError as exc:  # nothing reached the server: leave it for a rerun
            summary.unreachable = summary.unreachable or str(exc) or type(exc).__name__
            stop.set()
            raise
        except RetryAfterTooLong as exc:
            # The key is out for longer than the cap (a daily limit): the request was not
            # served, so it is left for a rerun, and the batch stops instead of failing every
            # line after a pause of the cap each.
            summary.retry_after_too_long += 1
            summary.longest_retry_after = max(summary.longest_retry_after, exc.delay)
            stop.set()
            raise
        except (httpx2.HTTPError, ThrottleTrioError) as exc:
            # Also a cost above a limit's capacity (it could never go): the request failed,
            # and its line says why.
            return None, {"code": type(exc).__name__, "message": str(exc)}
        try:
            body: Any = response.json()
            error = None
        except ValueError:
            body = response.text
            error = {"code": "invalid_response", "message": "the response body is not JSON"}
        result = {
            "status_code": response.status_code,
            "request_id": response.headers.get("x-request-id", ""),
            "body": body,
        }
        return result, error

    async def watch_signals(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if stop.is_set():
                    stream.write("\nsecond signal: cancelling the requests in flight\n")
                    scope.cancel()
                    return
                summary.interrupted = True
                stop.set()
                stream.write(
                    f"\n{signal.Signals(signum).name}: finishing the requests in flight "
                    f"(at most {options.grace:g} s; again to cancel them)\n"
                )
                scope.deadline = min(scope.deadline, anyio.current_time() + options.grace)

    async def keep_progress_live() -> None:
        # On a terminal, redraw while nothing completes (a pause after a 429, slow calls).
        while True:
            await anyio.sleep(1 / progress.refresh)
            progress.tick(rate_limited=shell.rejections)

    # No pool timeout: the queue in front of the limits is the batch's own, not a stall.
    timeout = httpx2.Timeout(options.timeout, pool=None)
    async with httpx2.AsyncClient(transport=transport, headers=headers, timeout=timeout) as client:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(watch_signals, scope)
                if progress.interactive:
                    watchers.start_soon(keep_progress_live)
                async with amap(
                    send, todo, max_concurrent=options.max_concurrent, stop=stop
                ) as results:
                    async for result in results:
                        if result.error is not None:  # unreachable, or out for too long:
                            continue  # not written, a rerun sends it
                        response, error = result.value if result.value else (None, None)
                        try:
                            output.write(result.item.custom_id, response, error)
                        except OSError as exc:
                            # The disk is full, a size limit: no later result can be written
                            # either.  Stop; leaving this loop cancels the requests in flight.
                            # The file holds whole lines, so a rerun resumes.
                            summary.output_error = cannot_write(output.path, exc)
                            stop.set()
                            break
                        ok = response is not None and 200 <= response["status_code"] < 300
                        usage = _usage_tokens(response)
                        summary.succeeded += ok
                        summary.failed += not ok
                        summary.tokens += usage
                        progress.update(ok=ok, tokens=usage, rate_limited=shell.rejections)
                watchers.cancel_scope.cancel()
        if scope.cancelled_caught:
            summary.interrupted = True
    progress.finish()
    summary.rate_limited = shell.rejections
    summary.not_done = len(todo) - summary.succeeded - summary.failed
    summary.elapsed = time.monotonic() - started
    if summary.not_done and not (summary.unreachable or summary.retry_after_too_long):
        summary.interrupted = True
    logger.debug("batch finished: %s", summary)


def _auth_headers(options: BatchOptions) -> dict[str, str]:
    """The API key as the provider expects it: Anthropic's ``x-api-key`` (and the API version
    its Messages API requires), else ``Authorization: Bearer``."""
    if options.provider == "anthropic":
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if options.api_key:
            headers["x-api-key"] = options.api_key
        return headers
    return {"authorization": f"Bearer {options.api_key}"} if options.api_key else {}


def _usage_tokens(response: Mapping[str, Any] | None) -> float:
    if response is None or not isinstance(response.get("body"), dict):
        return 0.0
    usage = response["body"].get("usage")
    if not isinstance(usage, dict):
        return 0.0
    total = usage.get("total_tokens")
    if total is None:  # Anthropic's Messages API reports input and output only
        parts = [usage.get("input_tokens"), usage.get("output_tokens")]
        total = sum(part for part in parts if isinstance(part, int | float))
    return float(total) if isinstance(total, int | float) and math.isfinite(total) else 0.0
