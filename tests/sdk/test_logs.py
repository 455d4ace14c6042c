"""Every SDK call is logged with its model, tokens and cost (streams included), and an injected
failure with its kind."""

import time

import anthropic
import openai
import pytest

from mock_upstream import INPUT_TOKENS, OUTPUT_TOKENS

MESSAGES = [{"role": "user", "content": "Say hello"}]
# USD per million tokens in src/telemetry/prices.json
GPT_4O_MINI = (0.15, 0.6)
CLAUDE_HAIKU_4_5 = (1.0, 5.0)


@pytest.fixture(autouse=True)
def _through_proxy_only(direct):
    if direct:
        pytest.skip("logs are the proxy's")


def logs_of(rubberduck, proxy, count):
    """The proxy's log entries, newest first, once `count` have been written."""
    deadline = time.monotonic() + 10
    while True:
        status, body = rubberduck.api("GET", f"/api/logs?proxy_id={proxy.info['id']}")
        assert status == 200, body
        if body["total"] >= count or time.monotonic() > deadline:
            assert body["total"] == count, body
            return body["logs"]
        time.sleep(0.05)


def cost(prices, input_tokens, output_tokens):
    return (input_tokens * prices[0] + output_tokens * prices[1]) / 1e6


def test_openai_calls_are_logged_with_tokens_and_cost(create_proxy, rubberduck):
    proxy = create_proxy("openai")
    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    streamed, plain = logs_of(rubberduck, proxy, 2)
    for entry, stream in ((plain, False), (streamed, True)):
        assert entry["model"] == "gpt-4o-mini"
        assert entry["stream"] is stream
        assert entry["status"] == 200
        assert entry["input_tokens"] == INPUT_TOKENS
        assert entry["output_tokens"] == OUTPUT_TOKENS
        assert entry["cost_usd"] == pytest.approx(cost(GPT_4O_MINI, INPUT_TOKENS, OUTPUT_TOKENS))
        assert entry["user_agent"].startswith("OpenAI/Python")
        assert entry["failure"] is None


def test_anthropic_stream_is_logged_with_tokens_and_cost(create_proxy, rubberduck):
    proxy = create_proxy("anthropic")
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=proxy.url, max_retries=0)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES) as stream:
        stream.get_final_message()
    (entry,) = logs_of(rubberduck, proxy, 1)
    assert entry["path"] == "/v1/messages"
    assert entry["model"] == "claude-haiku-4-5"
    assert entry["stream"] is True
    assert entry["input_tokens"] == INPUT_TOKENS
    assert entry["output_tokens"] == OUTPUT_TOKENS
    assert entry["cost_usd"] == pytest.approx(cost(CLAUDE_HAIKU_4_5, INPUT_TOKENS, OUTPUT_TOKENS))


def test_an_injected_failure_is_logged_with_its_kind(create_proxy, rubberduck):
    proxy = create_proxy("openai")
    status, _ = rubberduck.api(
        "PUT", f"/api/proxies/{proxy.info['id']}/failure-config", {"errors": {"enabled": True, "rates": {"429": 1.0}}}
    )
    assert status == 200
    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0) as client:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (entry,) = logs_of(rubberduck, proxy, 1)
    assert entry["status"] == 429
    assert entry["failure"] == "error_injection"
    assert entry["model"] == "gpt-4o-mini"
    assert entry["cost_usd"] is None
