"""DeepSeek through the `openai` SDK (DeepSeek's documented client) and a DeepSeek proxy."""

import openai
import pytest

from mock_upstream import ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, RATE_LIMITED_MODEL

API_KEY = "sk-deepseek-test"
MODEL = "deepseek-chat"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("deepseek")


@pytest.fixture(params=["", "/v1"], ids=["documented-base", "base-with-v1"])
def client(request, proxy):
    """DeepSeek documents `base_url="https://api.deepseek.com"`; `/v1` is accepted too."""
    with openai.OpenAI(api_key=API_KEY, base_url=proxy.url + request.param, max_retries=0, timeout=30) as client:
        client.sdk_path = f"{request.param}/chat/completions"
        yield client


def upstream_path(client, direct):
    # The proxy's upstream base is <mock>/v1: both client paths land on /v1/chat/completions.
    return client.sdk_path if direct else "/v1/chat/completions"


def test_chat_completion(client, mock, direct):
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content == ANSWER
    assert completion.usage.prompt_tokens == INPUT_TOKENS
    assert completion.usage.completion_tokens == OUTPUT_TOKENS
    recorded = mock.only()
    assert recorded.method == "POST"
    assert recorded.raw_path == upstream_path(client, direct)
    assert recorded.header("Authorization") == f"Bearer {API_KEY}"
    assert recorded.header("Host") == f"127.0.0.1:{mock.port}"
    assert recorded.body == raw.http_request.content


def test_stream(client, mock, direct):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ANSWER_CHUNKS
    assert chunks[-1].usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS
    recorded = mock.only()
    assert recorded.raw_path == upstream_path(client, direct)
    assert recorded.json()["stream"] is True


def test_upstream_429_surfaces_as_rate_limit_error(client, mock):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=RATE_LIMITED_MODEL, messages=MESSAGES)
    assert len(mock.received()) == 1
