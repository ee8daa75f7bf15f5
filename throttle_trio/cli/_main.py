"""Argument parsing for ``throttle-trio``; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ._batch import BatchOptions, run_batch_file
from ._files import BatchFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2


def _positive(kind: type[float | int]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="throttle-trio",
        description="Keep LLM batches inside the provider's limits, without wasting quota.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    batch.add_argument("--rpm", type=_positive(float), help="requests per minute")
    batch.add_argument("--tpm", type=_positive(float), help="tokens per minute")
    batch.add_argument(
        "--burst",
        type=_positive(float),
        metavar="SECONDS",
        help="bucket size in seconds of the rate (default: a whole minute; set e.g. 1 for "
        "providers that enforce per-second slices)",
    )
    batch.add_argument(
        "--max-concurrent", type=_positive(int), default=64, help="requests in flight (64)"
    )
    batch.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable that holds the API key (OPENAI_API_KEY)",
    )
    batch.add_argument(
        "--max-attempts", type=_positive(int), default=5, help="attempts per request (5)"
    )
    batch.add_argument(
        "--no-refund",
        action="store_true",
        help="keep unused estimates charged (providers that count max_tokens up front)",
    )
    batch.add_argument(
        "--grace",
        type=_positive(float),
        default=30.0,
        help="seconds to let requests in flight finish after Ctrl-C (30)",
    )
    serve = commands.add_parser(
        "serve",
        help="run the fake OpenAI-compatible server on loopback",
        description="Serve the fake OpenAI-compatible LLM API until Ctrl-C.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free one)")
    serve.add_argument("--rpm", type=_positive(int), help="requests per minute (unlimited)")
    serve.add_argument("--tpm", type=_positive(int), help="tokens per minute (unlimited)")
    serve.add_argument(
        "--mode",
        choices=["settle", "openai"],
        default="settle",
        help="settle: charge the estimate, adjust to usage (Anthropic-like); openai: count "
        "prompt + max_tokens up front, enforce per-second slices",
    )
    serve.add_argument(
        "--latency",
        type=_latency,
        default=(0.05, 0.3),
        metavar="LOW[,HIGH]",
        help="seconds per response, fixed or a uniform range (0.05,0.3)",
    )
    serve.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction answered 500/503 (0)"
    )

    demo = commands.add_parser(
        "demo",
        help="naive vs throttled against an embedded fake provider (no key, no network)",
        description=(
            "Start the fake provider on loopback and send the same requests twice: naively "
            "(gather + SDK-style retries) and through throttle_trio; print both side by side."
        ),
    )
    demo.add_argument("--requests", type=_positive(int), default=150, help="requests (150)")
    demo.add_argument("--rpm", type=_positive(int), default=1200, help="requests/min (1200)")
    demo.add_argument("--tpm", type=_positive(int), default=180_000, help="tokens/min (180000)")
    demo.add_argument("--plot", type=Path, metavar="FILE.svg", help="write a timeline (SVG)")
    return parser


def _latency(text: str) -> tuple[float, float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW or LOW,HIGH seconds, got {text!r}"
        ) from None
    if len(values) not in (1, 2) or not all(0 <= v < 3600 for v in values):
        raise argparse.ArgumentTypeError(f"expected LOW or LOW,HIGH seconds, got {text!r}")
    low, high = values[0], values[-1]
    if high < low:
        raise argparse.ArgumentTypeError(f"HIGH must be >= LOW, got {text!r}")
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


def _batch(args: argparse.Namespace) -> int:
    if not (args.rpm or args.tpm):
        print("throttle-trio batch: give --rpm, --tpm or both", file=sys.stderr)
        return EXIT_USAGE
    options = BatchOptions(
        input=args.input,
        output=args.output,
        base_url=args.base_url,
        rpm=args.rpm,
        tpm=args.tpm,
        burst_seconds=args.burst,
        max_concurrent=args.max_concurrent,
        api_key=os.environ.get(args.api_key_env),
        max_attempts=args.max_attempts,
        refund_unused=not args.no_refund,
        grace=args.grace,
    )
    try:
        summary = anyio.run(run_batch_file, options, backend=args.backend)
    except BatchFileError as exc:
        print(f"throttle-trio batch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.report(options.rpm, options.tpm), file=sys.stderr)
    return EXIT_INCOMPLETE if summary.not_done else EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from ._serve import run_server

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(
            partial(
                run_server,
                host=args.host,
                port=args.port,
                rpm=args.rpm,
                tpm=args.tpm,
                mode=args.mode,
                latency=args.latency,
                error_rate=args.error_rate,
            ),
            backend=args.backend,
        )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    anyio.run(
        partial(run_demo, requests=args.requests, rpm=args.rpm, tpm=args.tpm, plot=args.plot),
        backend=args.backend,
    )
    return EXIT_OK
