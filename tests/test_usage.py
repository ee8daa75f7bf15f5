"""Reading the usage out of response bodies: pure, no event loop."""

from __future__ import annotations

import gzip
import json

import pytest

from throttle_trio._usage import UsageReader, usage_from_json


def test_openai_usage() -> None:
    body = {"usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}}
    assert usage_from_json(body) == {"input_tokens": 12, "output_tokens": 30, "tokens": 42}


@pytest.mark.parametrize(
    ("usage", "expected_input"),
    [
        ({"input_tokens": 10, "output_tokens": 5}, 10),
        # Cache writes count toward Anthropic's input-tokens limit, cache reads do not.
        (
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 1000,
                "cache_read_input_tokens": 500,
                "output_tokens": 5,
            },
            1010,
        ),
        ({"input_tokens": 10, "cache_creation_input_tokens": None, "output_tokens": 5}, 10),
    ],
)
def test_anthropic_usage_counts_what_its_input_limit_counts(
    usage: dict[str, object], expected_input: int
) -> None:
    assert usage_from_json({"type": "message", "usage": usage}) == {
        "input_tokens": expected_input,
        "output_tokens": 5,
        "tokens": expected_input + 5,
    }


def test_anthropic_stream_usage_from_message_start_and_delta() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "usage": {"input_tokens": 7, "cache_creation_input_tokens": 3, "output_tokens": 1}
            },
        },
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "usage": {"output_tokens": 20}},
    ]
    body = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"  # type: ignore[attr-defined]
        for e in events
    )
    reader = UsageReader("text/event-stream", "")
    reader.feed(body[:17])
    reader.feed(body[17:])
    assert reader.usage() == {"input_tokens": 10, "output_tokens": 20, "tokens": 30}


def test_a_gzip_json_body() -> None:
    body = gzip.compress(
        json.dumps({"usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode()
    )
    reader = UsageReader("application/json", "gzip")
    reader.feed(body)
    assert reader.usage() == {"input_tokens": 1, "output_tokens": 2, "tokens": 3}


@pytest.mark.parametrize("document", [None, [], {"usage": "x"}, {"usage": {"prompt_tokens": -1}}])
def test_no_usage(document: object) -> None:
    assert usage_from_json(document) is None
