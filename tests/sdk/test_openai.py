"""The `openai` SDK through an OpenAI proxy."""

import json

import openai
import pytest

from mock_upstream import ANSWER, ANSWER_CHUNKS, EMBEDDING, INPUT_TOKENS, OUTPUT_TOKENS, RATE_LIMITED_MODEL

API_KEY = "sk-test"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("openai")


@pytest.fixture
def client(proxy):
    with openai.OpenAI(api_key=API_KEY, base_url=f"{proxy.url}/v1", max_retries=0, timeout=30) as client:
        yield client


def assert_sent_by_sdk(mock, recorded, path, method="POST"):
    assert recorded.method == method
    assert recorded.raw_path == path
    assert recorded.header("Authorization") == f"Bearer {API_KEY}"
    assert (recorded.header("User-Agent") or "").startswith("OpenAI/Python")
    assert recorded.header("Host") == f"127.0.0.1:{mock.port}", "Host is the upstream's"
    assert "x-stainless-lang" in recorded.header_names()


def test_chat_completion(client, mock):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0)
    completion = raw.parse()

    assert completion.choices[0].message.content == ANSWER
    assert completion.usage.prompt_tokens == INPUT_TOKENS
    assert completion.usage.completion_tokens == OUTPUT_TOKENS
    assert raw.headers.get("x-request-id") == "req_mock_chat", "upstream headers come back"
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/chat/completions")
    assert recorded.header("Content-Type") == "application/json"
    assert recorded.json() == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0}
    assert raw.http_request.content == recorded.body, "body bytes forwarded unchanged"


def test_chat_completion_stream_with_usage(client, mock):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == len(ANSWER_CHUNKS)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == INPUT_TOKENS
    assert chunks[-1].usage.completion_tokens == OUTPUT_TOKENS
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/chat/completions")
    assert recorded.json()["stream"] is True
    assert recorded.json()["stream_options"] == {"include_usage": True}


def test_stream_arrives_incrementally(client, mock):
    """Chunks reach the SDK while the upstream is still sending (no buffering in between)."""
    import time

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    arrivals = [time.monotonic() for _ in stream]
    assert len(arrivals) >= len(ANSWER_CHUNKS) + 2
    assert arrivals[-1] - arrivals[0] > 0.02, "all chunks arrived at once: the stream was buffered"


def test_base_url_without_v1_reaches_the_same_upstream_path(proxy, mock, direct):
    with openai.OpenAI(api_key=API_KEY, base_url=proxy.url, max_retries=0, timeout=30) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.choices[0].message.content == ANSWER
    recorded = mock.only()
    # Through a proxy whose upstream base is <mock>/v1, `/chat/completions` maps to /v1/chat/completions.
    assert_sent_by_sdk(mock, recorded, "/chat/completions" if direct else "/v1/chat/completions")
    assert recorded.json()["messages"] == MESSAGES


def test_models_list_stays_get(client, mock):
    models = client.models.list()

    assert [m.id for m in models.data] == ["gpt-4o-mini", "text-embedding-3-small"]
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/models", method="GET")
    assert recorded.body == b""


def test_embeddings(client, mock):
    result = client.embeddings.create(model="text-embedding-3-small", input="duck")

    assert result.data[0].embedding == EMBEDDING
    assert result.usage.prompt_tokens == INPUT_TOKENS
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/embeddings")
    assert recorded.json() == {"model": "text-embedding-3-small", "input": "duck", "encoding_format": "base64"}


def test_responses_api(client, mock):
    response = client.responses.create(model="gpt-4o-mini", input="Say hello")

    assert response.output_text == ANSWER
    assert response.usage.input_tokens == INPUT_TOKENS
    assert response.usage.output_tokens == OUTPUT_TOKENS
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/responses")
    assert recorded.json() == {"model": "gpt-4o-mini", "input": "Say hello"}


def test_responses_api_stream(client, mock):
    events = list(client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True))

    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == ANSWER
    assert len(deltas) == len(ANSWER_CHUNKS)
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == OUTPUT_TOKENS
    assert mock.only().json()["stream"] is True


def test_upstream_429_surfaces_as_rate_limit_error(client, mock):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=RATE_LIMITED_MODEL, messages=MESSAGES)

    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.body["message"] == "Rate limit reached for requests"
    assert error.response.headers.get("retry-after") == "1"
    assert len(mock.received()) == 1, "max_retries=0: one upstream call"


def test_extra_headers_and_query_pass_through(client, mock):
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"OpenAI-Organization": "org-duck", "X-Custom-Trace": "abc123"},
        extra_query={"trace": "on"},
    )

    recorded = mock.only()
    assert recorded.raw_path == "/v1/chat/completions?trace=on"
    assert recorded.header("OpenAI-Organization") == "org-duck"
    assert recorded.header("X-Custom-Trace") == "abc123"


def test_body_bytes_are_forwarded_verbatim(proxy, mock):
    """Unusual but valid JSON (spacing, key order, unicode escapes) reaches the upstream byte for byte."""
    import httpx

    body = b'{ "messages":[{"content":"caf\\u00e9  \xf0\x9f\xa6\x86","role":"user"}],\n  "model":"gpt-4o-mini" }'
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert json.loads(response.content)["choices"][0]["message"]["content"] == ANSWER
    assert mock.only().body == body
