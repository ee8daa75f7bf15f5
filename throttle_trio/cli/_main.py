"""Argument parsing for ``throttle-trio``; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio

from .._version import __version__
from ._batch import BatchOptions, run_batch_file
from ._files import BatchFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2

N = TypeVar("N", int, float)


def _number(
    kind: type[N],
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> Callable[[str], N]:
    """An argparse ``type`` that parses a finite ``kind`` within bounds.

    A bad value fails with the constraint and the value; argparse names the flag:
    ``argument --error-rate: must be a number >= 0 and < 1, got '1.5'``.
    """
    bounds = [
        f"{sign} {bound:g}"
        for sign, bound in ((">", above), (">=", at_least), ("<", below), ("<=", at_most))
        if bound is not None
    ]
    constraint = f"{'an integer' if kind is int else 'a number'} {' and '.join(bounds)}".strip()

    def parse(text: str) -> N:
        try:
            value = kind(text.strip())
        except ValueError:
            value = None
        if (
            value is None
            or not math.isfinite(value)
            or (above is not None and not value > above)
            or (at_least is not None and not value >= at_least)
            or (below is not None and not value < below)
            or (at_most is not None and not value <= at_most)
        ):
            raise argparse.ArgumentTypeError(f"must be {constraint}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


_positive_int = _number(int, above=0)
_positive_float = _number(float, above=0)


def _throttle_name(text: str) -> str:
    """A shared throttle's name: what Redis keys can hold (no braces: they are the hash tag)."""
    if not text or "{" in text or "}" in text:
        raise argparse.ArgumentTypeError(
            f"must be a non-empty name without '{{' or '}}', got {text!r}"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="throttle-trio",
        description="Keep LLM batches inside the provider's limits, without wasting quota.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop to run on"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    batch = commands.add_parser(
        "batch",
        help="run a JSONL batch file (OpenAI batch format) against an endpoint",
        description=(
            "Send every request of a JSONL file (OpenAI's batch input format) within the "
            "given limits and append one result line per request (OpenAI's batch output "
            "format) to the output file.  Rerunning skips requests already in the output, "
            "so an interrupted batch resumes where it stopped."
        ),
    )
    batch.add_argument("input", type=Path, help="the requests, one JSON object per line")
    batch.add_argument("-o", "--output", type=Path, required=True, help="results (appended)")
    batch.add_argument("--base-url", required=True, help="e.g. https://api.openai.com/v1")
    batch.add_argument(
        "--provider",
        choices=["openai", "anthropic"],
        help="the settings that fit the provider's enforcement (per-second slices, max_tokens "
        "counted up front, refunds only where the provider refunds, backoff on 429s): openai "
        "needs --rpm and --tpm, anthropic --rpm, --itpm and --otpm",
    )
    batch.add_argument("--rpm", type=_positive_float, help="requests per minute")
    batch.add_argument("--tpm", type=_positive_float, help="tokens per minute")
    batch.add_argument(
        "--itpm", type=_positive_float, help="input tokens per minute (--provider anthropic)"
    )
    batch.add_argument(
        "--otpm", type=_positive_float, help="output tokens per minute (--provider anthropic)"
    )
    batch.add_argument(
        "--burst",
        type=_positive_float,
        metavar="SECONDS",
        help="bucket size in seconds of the rate (default: a whole minute)",
    )
    batch.add_argument(
        "--window",
        type=_positive_float,
        metavar="SECONDS",
        help="instead of buckets, sliding windows: at most SECONDS of each rate in any "
        "SECONDS (e.g. 1.05 for providers that enforce per-second slices)",
    )
    batch.add_argument(
        "--max-concurrent", type=_positive_int, default=64, help="requests in flight (64)"
    )
    batch.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable that holds the API key (OPENAI_API_KEY; with --provider "
        "anthropic, ANTHROPIC_API_KEY, sent as x-api-key)",
    )
    batch.add_argument(
        "--max-attempts", type=_positive_int, default=5, help="attempts per request (5)"
    )
    batch.add_argument(
        "--max-retry-after",
        type=_number(float, at_least=0),
        metavar="SECONDS",
        help="the longest wait a server may ask for (Retry-After, or an exhausted limit's "
        "reset) before the batch stops, leaving the rest for a rerun (120)",
    )
    batch.add_argument(
        "--strict",
        action="store_true",
        help="refuse the file, before sending anything, if any line is malformed (exit status "
        "2, for CI); without it such lines are skipped and counted",
    )
    batch.add_argument(
        "--no-refund",
        action="store_true",
        help="keep unused estimates charged (providers that count max_tokens up front)",
    )
    batch.add_argument(
        "--grace",
        type=_positive_float,
        default=30.0,
        help="seconds to let requests in flight finish after Ctrl-C (30)",
    )
    batch.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("THROTTLE_TRIO_REDIS_URL") or None,
        help="share the limits through Redis with every batch process given the same URL and "
        "--name, on any machine (redis://, rediss://, unix://, redis+cluster://; default: "
        "$THROTTLE_TRIO_REDIS_URL; needs the redis extra); --max-concurrent stays per process",
    )
    batch.add_argument(
        "--name",
        type=_throttle_name,
        help="the shared throttle's name (default: from --base-url's host and a hash of the "
        "API key, so processes calling one API with one key share its limits)",
    )
    serve = commands.add_parser(
        "serve",
        help="run the fake OpenAI- and Anthropic-compatible server on loopback",
        description=(
            "Serve the fake LLM API (OpenAI's chat completions, completions and embeddings; "
            "Anthropic's messages) until Ctrl-C or SIGTERM, which stop it gracefully: it "
            "stops accepting connections and lets the requests in flight finish."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument(
        "--port",
        type=_number(int, at_least=0, at_most=65535),
        default=8000,
        help="port (8000; 0: any free one)",
    )
    serve.add_argument("--rpm", type=_positive_int, help="requests per minute (unlimited)")
    serve.add_argument("--tpm", type=_positive_int, help="tokens per minute (unlimited)")
    serve.add_argument(
        "--itpm", type=_positive_int, help="input tokens per minute (unlimited; Anthropic's ITPM)"
    )
    serve.add_argument(
        "--otpm", type=_positive_int, help="output tokens per minute (unlimited; Anthropic's OTPM)"
    )
    serve.add_argument(
        "--mode",
        choices=["settle", "openai", "anthropic"],
        default="settle",
        help="settle: charge the estimate, adjust to usage; openai: count prompt + max_tokens "
        "up front, enforce per-second slices (OpenAI's rate-limit guide); anthropic: settle, "
        "and hold requests to a second's worth (Anthropic's rate-limits page)",
    )
    serve.add_argument(
        "--latency",
        type=_latency,
        default=(0.05, 0.3),
        metavar="LOW[,HIGH]",
        help="seconds per response, fixed or a uniform range (0.05,0.3)",
    )
    serve.add_argument(
        "--error-rate",
        type=_number(float, at_least=0, below=1),
        default=0.0,
        help="fraction answered 500/503 (529 for messages), from 0 to less than 1 (0)",
    )
    serve.add_argument(
        "--stream-interval",
        type=_number(float, at_least=0, below=3600),
        default=0.0,
        metavar="SECONDS",
        help="seconds between the chunks of a streamed response (0)",
    )
    serve.add_argument(
        "--grace",
        type=_number(float, at_least=0),
        default=10.0,
        metavar="SECONDS",
        help="seconds to let requests in flight finish after Ctrl-C or SIGTERM (10)",
    )
    serve.add_argument(
        "--token-factor",
        type=_token_factor,
        default=1.0,
        metavar="FACTOR",
        help="prompt tokens counted per 4 characters, as a provider whose tokenizer is not the "
        "client's: FACTOR for every model, LOW,HIGH drawn per model from --seed, or "
        "MODEL=FACTOR,... (other models 1); each factor > 0 (1)",
    )
    serve.add_argument(
        "--seed",
        type=_number(int, at_least=0),
        default=0,
        help="seeds the random choices: latency, errors, completion lengths, and the factors "
        "of a --token-factor range (0)",
    )

    demo = commands.add_parser(
        "demo",
        help="naive vs throttled against an embedded fake provider (no key, no network)",
        description=(
            "Start the fake provider on loopback and send the same requests twice: naively "
            "(gather + SDK-style retries) and through throttle_trio; print both side by side."
        ),
    )
    demo.add_argument("--requests", type=_positive_int, default=150, help="requests (150)")
    demo.add_argument("--rpm", type=_positive_int, default=1200, help="requests/min (1200)")
    demo.add_argument("--tpm", type=_positive_int, default=180_000, help="tokens/min (180000)")
    demo.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="draw the timeline of both runs to FILE (.svg, .png or .pdf; the plot extra)",
    )
    return parser


def _latency(text: str) -> tuple[float, float]:
    message = f"must be LOW or LOW,HIGH seconds, each >= 0 and < 3600, got {text!r}"
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if len(values) not in (1, 2) or not all(0 <= v < 3600 for v in values):  # NaN fails too
        raise argparse.ArgumentTypeError(message)
    low, high = values[0], values[-1]
    if high < low:
        raise argparse.ArgumentTypeError(f"must have HIGH >= LOW, got {text!r}")
    return low, high


def _token_factor(text: str) -> float | tuple[float, float] | dict[str, float]:
    """``--token-factor``: ``FACTOR``, ``LOW,HIGH`` or ``MODEL=FACTOR[,MODEL=FACTOR...]``, as
    :class:`~throttle_trio.testing.FakeLLMServer`'s ``token_factor`` takes them."""
    message = (
        "must be FACTOR, LOW,HIGH or MODEL=FACTOR[,MODEL=FACTOR...], each factor a number > 0, "
        f"got {text!r}"
    )

    def factor(part: str) -> float:
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(message) from None
        if not (math.isfinite(value) and value > 0):  # NaN fails too
            raise argparse.ArgumentTypeError(message)
        return value

    parts = [part.strip() for part in text.split(",")]
    if any("=" in part for part in parts):
        factors: dict[str, float] = {}
        for part in parts:
            model, equals, value = part.partition("=")
            model = model.strip()
            if not equals or not model or model in factors:
                raise argparse.ArgumentTypeError(message)
            factors[model] = factor(value)
        return factors
    if len(parts) == 1:
        return factor(parts[0])
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(message)
    low, high = factor(parts[0]), factor(parts[1])
    if high < low:
        raise argparse.ArgumentTypeError(f"must have HIGH >= LOW, got {text!r}")
    return low, high


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``throttle-trio``; returns the exit status (0: done, 1: incomplete, 2: bad input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "batch":
        return _batch(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        return _demo(args)
    raise AssertionError(f"unknown command {args.command!r}")  # argparse rejects it first


def _limit_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the limit options of ``batch`` (``None``: nothing)."""
    if args.provider == "openai":
        if args.rpm is None or args.tpm is None:
            return "--provider openai needs --rpm and --tpm"
    elif args.provider == "anthropic":
        if args.rpm is None or args.itpm is None or args.otpm is None:
            return "--provider anthropic needs --rpm, --itpm and --otpm"
        if args.tpm is not None:
            return "--tpm does not go with --provider anthropic (its limits are --itpm and --otpm)"
        if args.no_refund:
            return "--no-refund does not go with --provider anthropic (Anthropic refunds)"
    elif args.itpm is not None or args.otpm is not None:
        return "--itpm and --otpm need --provider anthropic"
    elif not (args.rpm or args.tpm):
        return "give --rpm, --tpm or both (or --provider)"
    if args.provider is not None:
        for flag, value in (("--burst", args.burst), ("--window", args.window)):
            if value is not None:
                return f"{flag} does not go with --provider (the preset sets the slices)"
    if args.burst is not None and args.window is not None:
        return "give --burst or --window, not both"
    return None


def _batch(args: argparse.Namespace) -> int:
    problem = _limit_problem(args)
    if problem:
        print(f"throttle-trio batch: {problem}", file=sys.stderr)
        return EXIT_USAGE
    api_key_env = args.api_key_env or (
        "ANTHROPIC_API_KEY" if args.provider == "anthropic" else "OPENAI_API_KEY"
    )
    options = BatchOptions(
        input=args.input,
        output=args.output,
        base_url=args.base_url,
        rpm=args.rpm,
        tpm=args.tpm,
        burst_seconds=args.burst,
        max_concurrent=args.max_concurrent,
        api_key=os.environ.get(api_key_env),
        max_attempts=args.max_attempts,
        refund_unused=not args.no_refund,
        grace=args.grace,
        strict=args.strict,
        max_retry_after=args.max_retry_after,
        redis_url=args.redis,
        name=args.name,
        provider=args.provider,
        window_seconds=args.window,
        itpm=args.itpm,
        otpm=args.otpm,
    )
    if options.name is not None and options.redis_url is None:
        print("throttle-trio batch: --name needs --redis URL", file=sys.stderr)
        return EXIT_USAGE
    if options.redis_url is not None:
        problem = _redis_problem(options.redis_url)
        if problem:
            print(f"throttle-trio batch: --redis: {problem}", file=sys.stderr)
            return EXIT_USAGE
    try:
        summary = anyio.run(run_batch_file, options, backend=args.backend)
    except BatchFileError as exc:  # found before anything was sent
        print(f"throttle-trio batch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.report(options.rpm, options.tpm), file=sys.stderr)
    if summary.output_error:  # the last line, where a script or a person looks
        print(f"throttle-trio batch: {summary.output_error}", file=sys.stderr)
    return EXIT_INCOMPLETE if summary.not_done or summary.output_error else EXIT_OK


def _redis_problem(url: str) -> str | None:
    """What is wrong with ``--redis URL`` before anything starts (``None``: nothing)."""
    try:
        from ..redis import client_from_url
    except ImportError as exc:  # the redis extra is missing: its message names it
        return str(exc)
    try:
        client_from_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def _serve(args: argparse.Namespace) -> int:
    from ._serve import run_server

    try:
        anyio.run(
            partial(
                run_server,
                host=args.host,
                port=args.port,
                rpm=args.rpm,
                tpm=args.tpm,
                itpm=args.itpm,
                otpm=args.otpm,
                mode=args.mode,
                latency=args.latency,
                error_rate=args.error_rate,
                stream_interval=args.stream_interval,
                grace=args.grace,
                token_factor=args.token_factor,
                seed=args.seed,
            ),
            backend=args.backend,
        )
    except KeyboardInterrupt:  # a second Ctrl-C while the requests in flight finish
        return EXIT_OK
    except (OSError, BaseExceptionGroup) as exc:
        error = _os_error(exc)
        if error is None:
            raise
        # The address cannot be bound: in use, not local, no permission.
        print(
            f"throttle-trio serve: cannot listen on {args.host}:{args.port}: {error}",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


def _os_error(exc: BaseException) -> OSError | None:
    """``exc`` if it is an ``OSError``, or the first one in an exception group."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _os_error(inner)) is not None:
                return found
    return None


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    anyio.run(
        partial(run_demo, requests=args.requests, rpm=args.rpm, tpm=args.tpm, plot=args.plot),
        backend=args.backend,
    )
    return EXIT_OK
