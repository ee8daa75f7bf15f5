"""``python -m bench.cli``: ``throttle-trio batch --provider`` against the fake provider.

Issue 12's first target, for the command line: with the preset for each mode of the fake
server (OpenAI-like, Anthropic-like), over loopback, on both backends, 0 429s in 10 of 10
runs and a makespan within 1.05x of the fastest schedule the provider's own enforcement
allows for the same requests in the same order, on a request-bound file and on a token-bound
one.  ``python -m bench.http --presets`` measures the presets through the SDKs in-process;
this measures what a user of the command runs: ``python -m throttle_trio --backend B batch
FILE -o OUT --provider P --rpm ...`` as a **subprocess**, reading a JSONL file and writing
the results file, against :class:`~throttle_trio.testing.FakeLLMServer` in the matching mode
(``mode="openai"``: per-second slices, ``max_tokens`` kept; ``mode="anthropic"``: a
one-second requests bucket, ITPM and OTPM buckets settled to the usage) served in **its own
OS process** by ``bench.http``'s server child (``python -m bench.http --serve``, through
:class:`bench.http.ServerProcess`), a fresh one per run.  Both children run from this
checkout (``cwd``: ``python -m`` puts it first on ``sys.path``), so they import its library.

The files, generated from ``--seed`` (the same requests for both providers: chat
completions for OpenAI, ``/v1/messages`` for Anthropic):

* **request-bound** (``REQUEST_FILE``): short prompts and small ``max_tokens``, so that
  ``RPM / 60`` requests a second bind (20 a second at RPM 1,200) and the tokens stay far below
  their limits;
* **token-bound** (``TOKEN_FILE``): prompts of 1,200-2,000 characters (300-500 tokens at the
  fake's 4 characters a token) and ``max_tokens`` 200-300, so that OpenAI's ``TPM / 60``
  tokens a second bind (about 15 requests a second of the 20 the RPM allows), and Anthropic's
  ITPM, after the minute's worth its bucket starts with (OTPM alone would allow the file
  in three quarters of the time).

``LIMITS`` are one set per provider for both files (the file decides what binds), sized so
that the fastest schedule lasts about 20 s: long enough that the preset's fixed costs (the
OpenAI preset's quarter-second first window, the Anthropic buckets' start below full) are a
few percent of it, short enough for 10 runs of 8 rows in about half an hour.

**The figure.**  The server is the referee: its admission log gives the span from the first
admission to the last, and its counters the 429s.  The span is divided by the **fastest
schedule** the provider's own enforcement allows for the same requests in the same order
(:func:`fastest_schedule`): the fake's own :class:`~throttle_trio.testing._fake_limits.
KeyLimits` (the same class, the same parameters as the server's), each request admitted at
the first instant it fits, as ``bench.http``'s ``fastest_schedule`` computes it.  It is
computed per run from what the server counted: each request's prompt tokens and output
tokens as its response in the results file reports them (``usage``), so the figure uses the
server's tokenizer, not the client's; requests without a response are counted by the
server's own rule (:func:`~throttle_trio.testing._openai_shapes.count_text_tokens`).  In
Anthropic mode each estimate is settled to the output its response reported at once, where
the server settles only when the response completes (0.05-0.3 s later): the bound is a lower
bound, the ratio errs against the client.  A ratio of 1 is a client that keeps the
provider's limits full from its first admission to its last.

PASS per run: no 429 counted by the server, every line of the file answered 2xx in the
results, the command's exit status 0 within its time limit (``2 x`` the fastest schedule plus
30 s; past it the command is killed and the run fails), and ratio <= ``MAKESPAN_TARGET``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import trio.lowlevel
import trio.testing

import throttle_trio as tt
from throttle_trio.cli._batch import BatchOptions, make_throttle
from throttle_trio.testing._openai_shapes import count_text_tokens

from .http import LATENCY, ROOT, Charge, ServerProcess, ServerSummary, _machine, percentile
from .http import schedule as fastest_schedule

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["Charge", "FileShape", "Line", "fastest_schedule", "generate", "main"]

RPM = 1_200
LIMITS: dict[str, dict[str, Any]] = {
    # 20 requests and 10,000 tokens a second: a token-bound request estimates about 650.
    "openai": {"mode": "openai", "rpm": RPM, "tpm": 600_000},
    # 20 requests a second (a one-second bucket); about 1,583 input and 667 output tokens a
    # second after the minute's worth the buckets start with: on the token-bound file ITPM
    # binds (19.5 s), OTPM alone would allow 14.5 s, the requests 15.5 s.
    "anthropic": {"mode": "anthropic", "rpm": RPM, "tpm": None, "itpm": 95_000, "otpm": 40_000},
}
MODELS = {"openai": "fake-gpt", "anthropic": "fake-claude"}
URLS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MAKESPAN_TARGET = 1.05
KEY_ENV = "THROTTLE_TRIO_BENCH_KEY"
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed")


# --- the files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileShape:
    """How a generated file's requests are drawn (uniformly, in these inclusive ranges)."""

    lines: int
    prompt_chars: tuple[int, int]
    max_tokens: tuple[int, int]


REQUEST_FILE = FileShape(420, (20, 200), (16, 64))
TOKEN_FILE = FileShape(310, (1_200, 2_000), (200, 300))
FILES = {"request": REQUEST_FILE, "token": TOKEN_FILE}


@dataclass(frozen=True, slots=True)
class Line:
    """One request of a batch file."""

    custom_id: str
    prompt: str
    max_tokens: int

    @property
    def prompt_tokens(self) -> int:
        """The prompt as the fake counts it (its own tokenizer, one text)."""
        return count_text_tokens(self.prompt)

    def entry(self, provider: str) -> dict[str, Any]:
        """The line of OpenAI's batch input format, for ``provider``'s API."""
        body: dict[str, Any] = {
            "model": MODELS[provider],
            "messages": [{"role": "user", "content": self.prompt}],
            "max_tokens": self.max_tokens,
        }
        return {"custom_id": self.custom_id, "method": "POST", "url": URLS[provider], "body": body}


def generate(shape: FileShape, seed: int) -> list[Line]:
    """The requests of a file of ``shape``, drawn from ``seed``."""
    rng = random.Random(seed)
    lines = []
    for i in range(shape.lines):
        chars = rng.randint(*shape.prompt_chars)
        text = " ".join(rng.choice(_WORDS) for _ in range(chars // 4 + 1))[:chars]
        lines.append(Line(f"req-{i:04d}", text, rng.randint(*shape.max_tokens)))
    return lines


def write_file(path: Path, lines: Iterable[Line], provider: str) -> None:
    with path.open("w") as handle:
        for line in lines:
            handle.write(json.dumps(line.entry(provider)) + "\n")


# --- the fastest schedule the provider allows -----------------------------------------------


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The results file: each line by ``custom_id`` (a missing file: none)."""
    results: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(FileNotFoundError), path.open() as handle:
        for raw in handle:
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and isinstance(entry.get("custom_id"), str):
                    results[entry["custom_id"]] = entry
    return results


def succeeded(entry: Mapping[str, Any] | None) -> bool:
    response = entry.get("response") if entry else None
    return (
        entry is not None
        and entry.get("error") is None
        and isinstance(response, dict)
        and 200 <= response.get("status_code", 0) < 300
    )


def charges(lines: Iterable[Line], results: Mapping[str, Mapping[str, Any]]) -> list[Charge]:
    """Each line as the server counted it: the ``usage`` of its response (OpenAI's
    ``prompt_tokens``/``completion_tokens``, Anthropic's ``input_tokens``/``output_tokens``),
    else the server's rule for the prompt and the mean output."""
    out = []
    for line in lines:
        entry = results.get(line.custom_id)
        usage: Any = None
        if entry is not None and succeeded(entry):
            body = entry["response"].get("body")
            usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            output = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(prompt, int) and isinstance(output, int):
                out.append(Charge(prompt, line.max_tokens, output))
                continue
        out.append(Charge(line.prompt_tokens, line.max_tokens))
    return out


def preset_alone(provider: str, lines: list[Line], seed: int) -> float:
    """Seconds from the first admission to the last that the command's own throttle gives
    ``lines`` on virtual time (trio's ``MockClock``): no network, no loop stalls, no start-up;
    each request reported on the wire at its admission and held for a latency drawn in
    ``LATENCY``, its costs the library's estimate of
    its body with the prompt counted as the server counts it (what the transport's learned
    token ratios converge to: the estimate alone adds a few tokens per message), an Anthropic
    request settled to the mean output.  What the preset's design costs against
    :func:`fastest_schedule`, apart from what the run adds."""
    limits = LIMITS[provider]
    options = BatchOptions(
        input=Path("-"),
        output=Path("-"),
        base_url="http://127.0.0.1/v1",
        rpm=limits["rpm"],
        tpm=limits.get("tpm"),
        itpm=limits.get("itpm"),
        otpm=limits.get("otpm"),
        provider="openai" if provider == "openai" else "anthropic",
    )
    throttle = make_throttle(options, resuming=False)
    rng = random.Random(seed)
    admitted: list[float] = []

    async def one(line: Line) -> None:
        estimate = tt.estimate_request_cost(line.entry(provider)["body"])
        estimate["input_tokens"] = line.prompt_tokens
        estimate["tokens"] = line.prompt_tokens + line.max_tokens
        costs = {metric: cost for metric, cost in estimate.items() if throttle.accepts(metric)}
        async with throttle.reserve(costs, lane="batch") as slot:
            admitted.append(trio.current_time())
            slot.sent()  # on the wire at once: the command's transport reports each send
            await trio.sleep(rng.uniform(*LATENCY))
            if "output_tokens" in costs:
                slot.settle(output_tokens=Charge(0, line.max_tokens).used_output)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            for line in lines:
                nursery.start_soon(one, line)
                await trio.lowlevel.checkpoint()  # in file order, as the queue takes them

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    return max(admitted) - min(admitted)


# --- one run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    provider: str
    file: str
    backend: str
    number: int
    lines: int
    ok: int
    failed: int
    exit_status: int | None  # None: killed at the time limit
    server: ServerSummary
    fastest: float
    first_after_launch: float  # seconds from the command's launch to the first admission
    counted_differently: int  # lines whose reported prompt tokens differ from the fake's rule
    stderr_tail: str

    @property
    def ratio(self) -> float:
        return self.server.span / self.fastest if self.fastest > 0 else math.nan

    @property
    def passed(self) -> bool:
        return (
            self.exit_status == 0
            and self.server.rate_limited == 0
            and self.ok == self.lines
            and self.ratio <= MAKESPAN_TARGET
        )


def command(provider: str, backend: str, source: Path, output: Path, base_url: str) -> list[str]:
    """``throttle-trio batch --provider`` with ``LIMITS[provider]`` (``--backend`` is the
    command's own option, before the subcommand)."""
    limits = LIMITS[provider]
    argv = [sys.executable, "-m", "throttle_trio", "--backend", backend, "batch", str(source)]
    argv += ["-o", str(output), "--base-url", base_url, "--provider", provider]
    argv += ["--api-key-env", KEY_ENV, "--rpm", str(limits["rpm"])]
    for flag, name in (("--tpm", "tpm"), ("--itpm", "itpm"), ("--otpm", "otpm")):
        if limits.get(name) is not None:
            argv += [flag, str(limits[name])]
    return argv


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the command to stop (SIGINT, as Ctrl-C), then kill it if it does not."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def run_once(
    provider: str,
    file: str,
    backend: str,
    number: int,
    lines: list[Line],
    source: Path,
    workdir: Path,
    seed: int,
) -> RunResult:
    """One run of the command against a fresh server child; both stopped on the way out."""
    key = f"sk-bench-cli-{provider}-{file}-{backend}-{number}"
    limits = {**LIMITS[provider], "latency": list(LATENCY)}
    expected = fastest_schedule(
        LIMITS[provider], (Charge(x.prompt_tokens, x.max_tokens) for x in lines)
    )
    cap = 2 * expected + 30
    output = workdir / f"{provider}-{file}-{backend}-{number}.out.jsonl"
    log = workdir / f"{provider}-{file}-{backend}-{number}.stderr"
    server = ServerProcess(key, seed, limits)
    try:
        env = {**os.environ, KEY_ENV: key}
        with log.open("wb") as stderr:
            launched = time.monotonic()
            process = subprocess.Popen(
                command(provider, backend, source, output, server.base_url),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                status: int | None = process.wait(timeout=cap)
            except subprocess.TimeoutExpired:
                status = None
            finally:
                _stop(process)
        summary = server.summary()
    finally:
        server.close()
    results = read_results(output)
    counted = charges(lines, results)
    ok = sum(succeeded(results.get(line.custom_id)) for line in lines)
    failed = sum(line.custom_id in results for line in lines) - ok
    differ = sum(c.prompt != line.prompt_tokens for c, line in zip(counted, lines, strict=True))
    tail = log.read_text(errors="replace").strip().splitlines()[-4:]
    return RunResult(
        provider,
        file,
        backend,
        number,
        len(lines),
        ok,
        failed,
        status,
        summary,
        fastest_schedule(LIMITS[provider], counted),
        summary.first_admission - launched,
        differ,
        " | ".join(tail),
    )


def _describe(result: RunResult) -> str:
    s = result.server
    status = (
        "killed at the time limit" if result.exit_status is None else f"exit {result.exit_status}"
    )
    return (
        f"  {result.provider} {result.file}-bound [{result.backend}] run {result.number}: "
        f"{'PASS' if result.passed else 'FAIL'}: {s.rate_limited} 429s, {result.ok}/"
        f"{result.lines} ok, {result.failed} failed, {status}; first->last admission "
        f"{s.span:.2f} s / fastest {result.fastest:.2f} s = {result.ratio:.3f}x; first "
        f"admission {result.first_after_launch:.2f} s after launch"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cli",
        description="throttle-trio batch --provider, as a subprocess, against the fake "
        "provider in the matching mode (issue 12).",
    )
    parser.add_argument("--runs", type=int, default=10, help="runs per row (10)")
    parser.add_argument("--provider", action="append", choices=["openai", "anthropic"])
    parser.add_argument("--backend", action="append", choices=["asyncio", "trio"])
    parser.add_argument("--file", action="append", choices=list(FILES))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--lines",
        type=int,
        help="lines per file (default: 420 request-bound, 310 token-bound; runs of about "
        "20 s, where the preset's fixed costs weigh most)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    providers = args.provider or ["openai", "anthropic"]
    backends = args.backend or ["asyncio", "trio"]
    files = args.file or list(FILES)
    print(_machine(), flush=True)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        workdir = Path(tmp)
        for provider in providers:
            for file in files:
                shape = FILES[file]
                if args.lines:
                    shape = dataclasses.replace(shape, lines=args.lines)
                lines = generate(shape, args.seed)
                source = workdir / f"{provider}-{file}.jsonl"
                write_file(source, lines, provider)
                fastest = fastest_schedule(
                    LIMITS[provider], (Charge(x.prompt_tokens, x.max_tokens) for x in lines)
                )
                limits = {k: v for k, v in LIMITS[provider].items() if v is not None}
                alone = preset_alone(provider, lines, args.seed)
                print(
                    f"{provider}, {file}-bound file: {len(lines)} lines (seed {args.seed}), "
                    f"prompts {FILES[file].prompt_chars[0]}-{FILES[file].prompt_chars[1]} "
                    f"characters, max_tokens {FILES[file].max_tokens[0]}-"
                    f"{FILES[file].max_tokens[1]}, against {limits}: fastest schedule about "
                    f"{fastest:.2f} s (per run: from the usage the server reported); the "
                    f"command's throttle alone on virtual time: {alone:.2f} s = "
                    f"{alone / fastest:.3f}x",
                    flush=True,
                )
                for backend in backends:
                    for number in range(1, args.runs + 1):
                        result = run_once(
                            provider,
                            file,
                            backend,
                            number,
                            lines,
                            source,
                            workdir,
                            args.seed + number,
                        )
                        results.append(result)
                        print(_describe(result), flush=True)
                        if result.counted_differently:
                            print(
                                f"      {result.counted_differently} lines counted by the "
                                "server otherwise than by the fake's rule",
                                flush=True,
                            )
                        if not result.passed:
                            print(
                                f"      the command's last words: {result.stderr_tail}", flush=True
                            )
    print()
    status = 0
    for provider in providers:
        for file in files:
            for backend in backends:
                mine = [
                    r
                    for r in results
                    if (r.provider, r.file, r.backend) == (provider, file, backend)
                ]
                if not mine:
                    continue
                passed = sum(r.passed for r in mine)
                zero = sum(r.server.rate_limited == 0 for r in mine)
                ratios = sorted(r.ratio for r in mine)
                status |= passed != len(mine)
                print(
                    f"{'PASS' if passed == len(mine) else 'FAIL'} {provider} {file}-bound "
                    f"[{backend}]: {passed}/{len(mine)} runs pass ({zero} with zero 429s); "
                    f"makespan / fastest: min {ratios[0]:.3f}, median "
                    f"{percentile(ratios, 0.5):.3f}, max {ratios[-1]:.3f}",
                    flush=True,
                )
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the children are gone and the files removed by now
        print("interrupted", file=sys.stderr)
        sys.exit(130)
