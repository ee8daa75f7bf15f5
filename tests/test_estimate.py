"""Estimating an LLM request's cost from its body."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import estimate_request_cost


def test_openai_chat() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 41}]},
        ],
        "max_completion_tokens": 100,
        "n": 2,
    }
    prompt = 10 + 11 + 2 * 4
    assert estimate_request_cost(body) == {
        "requests": 1,
        "input_tokens": prompt,
        "output_tokens": 200,
        "tokens": prompt + 200,
    }
    assert estimate_request_cost(json.dumps(body).encode()) == estimate_request_cost(body)


def test_anthropic_messages_with_system_and_max_tokens() -> None:
    body = {"system": "s" * 8, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    assert estimate_request_cost(body)["tokens"] == 2 + 1 + 4 + 50


def test_completions_with_a_list_of_prompts_bound_each_output() -> None:
    cost = estimate_request_cost({"prompt": ["abcd", "efgh", "ij"], "max_tokens": 10, "n": 2})
    assert cost == {"requests": 1, "input_tokens": 3, "output_tokens": 60, "tokens": 63}


def test_embeddings_have_no_output() -> None:
    assert estimate_request_cost({"input": ["abcd", "efgh"]})["tokens"] == 2
    assert estimate_request_cost({"input": [1, 2, 3]})["tokens"] == 3
    assert estimate_request_cost({"input": [[1, 2], [3]]})["output_tokens"] == 0


def test_default_output_bound_and_custom_tokenizer() -> None:
    cost = estimate_request_cost(
        {"prompt": "one two three"}, count_tokens=lambda t: len(t.split()), default_max_tokens=7
    )
    assert cost == {"requests": 1, "input_tokens": 3, "output_tokens": 7, "tokens": 10}


def test_garbage_costs_one_request() -> None:
    assert estimate_request_cost(b"not json")["tokens"] == 4096
    assert estimate_request_cost(b"[1, 2]") == {
        "requests": 1,
        "tokens": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    assert (
        estimate_request_cost({"messages": "oops", "max_tokens": -5, "n": True})["tokens"] == 4096
    )


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_never_raises_on_any_json_value(value: object) -> None:
    body = {"messages": value, "prompt": value, "input": value, "max_tokens": value, "n": value}
    cost = estimate_request_cost(body)
    assert cost["requests"] == 1
    assert cost["tokens"] == cost["input_tokens"] + cost["output_tokens"] >= 0
