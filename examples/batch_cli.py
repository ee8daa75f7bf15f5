"""The ``throttle-trio`` command end to end: ``serve`` in the background, ``batch`` against it.

1. writes ``requests.jsonl``: 40 chat requests in OpenAI's batch input format;
2. starts ``throttle-trio serve --port 0`` (the fake provider on a free loopback port) in the
   background and reads the address it prints;
3. runs ``throttle-trio batch requests.jsonl -o results.jsonl`` against it and prints the
   number of result lines and the command's summary;
4. runs the same command again: every request is already in the output, so it sends nothing
   (this is how an interrupted batch resumes);
5. stops the server (SIGINT, as Ctrl-C would).

The commands run as ``python -m throttle_trio.cli`` so that the example does not depend on
``PATH``.  Every step is bounded by a timeout; the files live in a temporary directory.
No key, no network beyond 127.0.0.1.  Run it with ``python examples/batch_cli.py`` (a few
seconds).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "throttle_trio.cli"]
REQUESTS = 40


def write_requests(path: Path) -> None:
    with path.open("w") as handle:
        for number in range(REQUESTS):
            line = {
                "custom_id": f"question-{number}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "fake-llm",
                    "messages": [{"role": "user", "content": f"What is {number} squared?"}],
                    "max_tokens": 20,
                },
            }
            handle.write(json.dumps(line) + "\n")


def wait_for_address(log: Path, server: subprocess.Popen[bytes], timeout: float) -> str:
    """The base URL ``throttle-trio serve`` prints on stderr once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"http://\S+/v1", log.read_text())
        if found:
            return found.group(0)
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()}")
        time.sleep(0.05)
    raise TimeoutError(f"the server did not start within {timeout} s")


def run_batch(requests: Path, results: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    command = [
        *CLI,
        "batch",
        str(requests),
        "-o",
        str(results),
        "--base-url",
        base_url,
        "--rpm",
        "1200",  # 20 requests a second ...
        "--tpm",
        "100000",
        "--burst",
        "1",  # ... in bursts of one second's worth, not a whole minute's
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def summary(stderr: str) -> str:
    """The line of the batch report that counts the requests ("requests: 40 in the file, ...")."""
    return next(line for line in stderr.splitlines() if line.startswith("requests:"))


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        requests, results = folder / "requests.jsonl", folder / "results.jsonl"
        log = folder / "serve.log"
        write_requests(requests)
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                [*CLI, "serve", "--port", "0", "--rpm", "1200", "--latency", "0.01,0.05"],
                stderr=log_file,
            )
        try:
            base_url = wait_for_address(log, server, timeout=15)
            print(f"server: {base_url}")

            first = run_batch(requests, results, base_url)
            lines = results.read_text().splitlines()
            print(f"first run: exit status {first.returncode}, {len(lines)} lines in the output")
            print("  " + summary(first.stderr))
            statuses = {json.loads(line)["response"]["status_code"] for line in lines}
            print(f"  HTTP statuses in the output: {sorted(statuses)}")

            second = run_batch(requests, results, base_url)
            lines = results.read_text().splitlines()
            print(f"second run: exit status {second.returncode}, {len(lines)} lines in the output")
            print("  " + summary(second.stderr))
        finally:
            server.send_signal(signal.SIGINT)  # Ctrl-C: the server stops and exits 0
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        print(f"server stopped: exit status {server.returncode}")


if __name__ == "__main__":
    main()
