"""The `anthropic` SDK (and plain httpx with `x-api-key`, as older SDKs and curl send) through an
Anthropic proxy."""

import json

import anthropic
import httpx
import pytest

from mock_upstream import ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, RATE_LIMITED_MODEL

API_KEY = "sk-ant-test"
MODEL = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "Say hello"}]
# The `anthropic-version` this SDK release sends (it moves with SDK releases).
SDK_API_VERSION = anthropic.Anthropic(api_key="x").default_headers["anthropic-version"]


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("anthropic")


@pytest.fixture
def client(proxy):
    with anthropic.Anthropic(api_key=API_KEY, base_url=proxy.url, max_retries=0, timeout=30) as client:
        yield client


def credential(recorded) -> str | None:
    """The API key the SDK sent, whichever header carries it."""
    bearer = recorded.header("Authorization")
    if bearer is not None:
        assert bearer.startswith("Bearer ")
        return bearer.removeprefix("Bearer ")
    return recorded.header("x-api-key")


def assert_sent_by_sdk(mock, recorded, path):
    assert recorded.method == "POST"
    assert recorded.raw_path == path
    assert credential(recorded) == API_KEY
    assert recorded.header("anthropic-version") == SDK_API_VERSION
    assert recorded.header("Host") == f"127.0.0.1:{mock.port}"
    assert (recorded.header("User-Agent") or "").startswith("Anthropic/Python")


def test_message(client, mock):
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    message = raw.parse()

    assert message.content[0].text == ANSWER
    assert message.usage.input_tokens == INPUT_TOKENS
    assert message.usage.output_tokens == OUTPUT_TOKENS
    assert message.stop_reason == "end_turn"
    assert raw.headers.get("request-id") == "req_mock_msg"
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/messages")
    assert recorded.json() == {"model": MODEL, "max_tokens": 64, "messages": MESSAGES}
    assert raw.http_request.content == recorded.body


def test_sdk_sends_its_key_as_bearer_or_x_api_key(client, mock):
    """anthropic 2.x sends `Authorization: Bearer`; whatever it sends arrives unchanged."""
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    recorded = mock.only()
    assert credential(recorded) == API_KEY
    sent = [h for h in ("authorization", "x-api-key") if h in recorded.header_names()]
    assert len(sent) == 1, recorded.headers


def test_bearer_auth_token_passes_through(proxy, mock):
    with anthropic.Anthropic(auth_token="oauth-token-123", base_url=proxy.url, max_retries=0) as client:
        message = client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    assert message.content[0].text == ANSWER
    recorded = mock.only()
    assert recorded.header("Authorization") == "Bearer oauth-token-123"
    assert recorded.header("x-api-key") is None


def test_stream(client, mock):
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        events = list(stream)
        final = stream.get_final_message()

    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas == ANSWER_CHUNKS
    assert final.content[0].text == ANSWER
    assert final.usage.input_tokens == INPUT_TOKENS
    assert final.usage.output_tokens == OUTPUT_TOKENS
    assert events[0].type == "message_start"
    assert events[-1].type == "message_stop"
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/messages")
    assert recorded.json()["stream"] is True


def test_raw_stream_events(client, mock):
    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    types = [event.type for event in stream]

    assert types[:2] == ["message_start", "content_block_start"]
    assert types.count("content_block_delta") == len(ANSWER_CHUNKS)
    assert types[-2:] == ["message_delta", "message_stop"]


def test_count_tokens(client, mock):
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)

    assert counted.input_tokens == INPUT_TOKENS
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, "/v1/messages/count_tokens")
    assert recorded.json() == {"model": MODEL, "messages": MESSAGES}


def test_beta_header_is_kept(client, mock):
    client.messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, extra_headers={"anthropic-beta": "context-1m-2025-08-07"}
    )

    assert mock.only().header("anthropic-beta") == "context-1m-2025-08-07"


def test_x_api_key_passes_through(proxy, mock):
    """Older SDKs and curl authenticate with `x-api-key`."""
    body = json.dumps({"model": MODEL, "max_tokens": 16, "messages": MESSAGES}).encode()
    response = httpx.post(
        f"{proxy.url}/v1/messages",
        content=body,
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == ANSWER
    recorded = mock.only()
    assert recorded.header("x-api-key") == API_KEY
    assert recorded.header("Authorization") is None
    assert recorded.header("anthropic-version") == "2023-06-01"
    assert recorded.body == body


def test_upstream_429_surfaces_as_rate_limit_error(client, mock):
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=RATE_LIMITED_MODEL, max_tokens=8, messages=MESSAGES)

    assert caught.value.status_code == 429
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert len(mock.received()) == 1


def test_unreachable_upstream_is_an_anthropic_shaped_error(create_proxy, through_proxy):
    dead = create_proxy("anthropic", upstream_url="http://127.0.0.1:9")
    with anthropic.Anthropic(api_key=API_KEY, base_url=dead.url, max_retries=0, timeout=30) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)

    assert caught.value.status_code in (502, 503, 504)
    body = caught.value.response.json()
    assert body["type"] == "error", body
    assert body["error"]["type"] and body["error"]["message"], body


def test_models_list_with_query(client, mock):
    page = client.models.list(limit=5)

    assert [m.id for m in page.data] == ["claude-haiku-4-5"]
    recorded = mock.only()
    assert recorded.method == "GET"
    assert recorded.raw_path == "/v1/models?limit=5"
    assert credential(recorded) == API_KEY
