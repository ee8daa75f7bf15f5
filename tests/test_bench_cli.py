"""bench.cli's fastest schedule: the provider's own enforcement (the fake's ``KeyLimits``), each
request admitted at the first instant it fits.  Pure arithmetic, no server and no clock."""

from __future__ import annotations

from typing import Any

import pytest

from bench import cli, http
from bench.cli import Charge


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_agrees_with_bench_http(provider: str) -> None:
    """For bench.http's workload and limits, the same figure as bench.http's own function."""
    workload = http.Workload.generate(150, seed=7)
    charges = [Charge(item.prompt_tokens, item.max_tokens) for item in workload.items]
    expected = http.fastest_schedule(provider, workload)
    assert expected > 0
    assert cli.fastest_schedule(http.PRESET_LIMITS[provider], charges) == expected


def test_openai_slices() -> None:
    """20 requests in any one-second slice at RPM 1,200: 45 requests, admitted at 0, 1 and 2."""
    limits = {"mode": "openai", "rpm": 1_200, "tpm": 600_000}
    assert cli.fastest_schedule(limits, [Charge(1, 1)] * 45) == 2.0
    # 10,000 tokens a slice: three requests of 5,000 go at 0, 0 and 1.
    assert cli.fastest_schedule(limits, [Charge(4_000, 1_000)] * 3) == 1.0


def test_anthropic_buckets() -> None:
    """A one-second requests bucket (20) refilled at 20 a second; ITPM starts full and refills;
    the output estimate is settled at once to the output used."""
    limits = {"mode": "anthropic", "rpm": 1_200, "tpm": None, "itpm": 6_000, "otpm": 600}
    assert cli.fastest_schedule(limits, [Charge(1, 1)] * 45) == pytest.approx(25 / 20, abs=1e-9)
    # 6,000 input tokens at once, then 100 a second: the third request of 3,000 waits 30 s.
    assert cli.fastest_schedule(limits, [Charge(3_000, 1)] * 3) == pytest.approx(30, abs=1e-9)
    # OTPM 600 (10 a second): a bound of 600 needs a full bucket; settled at once to the 100
    # used, each next one waits 10 s for the other 100; reserved in full (output unknown: the
    # mean fraction, 375 of 600) the second waits 37.5 s for 375.
    assert cli.fastest_schedule(limits, [Charge(1, 600, 100)] * 5) == pytest.approx(40, abs=1e-9)
    assert cli.fastest_schedule(limits, [Charge(1, 600)] * 2) == pytest.approx(37.5, abs=1e-9)


def test_charges_read_the_usage_the_server_reported() -> None:
    lines = [cli.Line("a", "x" * 10, 50), cli.Line("b", "y" * 10, 60), cli.Line("c", "z", 70)]
    ok = {"error": None, "response": {"status_code": 200}}
    results: dict[str, dict[str, Any]] = {
        "a": {
            **ok,
            "response": {
                "status_code": 200,
                "body": {"usage": {"prompt_tokens": 9, "completion_tokens": 20}},
            },
        },
        "b": {
            **ok,
            "response": {
                "status_code": 200,
                "body": {"usage": {"input_tokens": 4, "output_tokens": 30}},
            },
        },
        "c": {"error": {"code": "x", "message": "y"}, "response": None},
    }
    assert cli.charges(lines, results) == [Charge(9, 50, 20), Charge(4, 60, 30), Charge(1, 70)]
