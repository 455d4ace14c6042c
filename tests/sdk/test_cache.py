"""The response cache through the official SDKs: every SDK call made a second time is answered by
the proxy alone (the mock upstream sees nothing new) and the SDK parses the very same answer,
streamed ones included. A replay-only proxy answers an unrecorded request with an error the SDK
raises, without asking the upstream."""

import json
import socket
import time

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

from mock_upstream import ANSWER, ANSWER_CHUNKS, EMBEDDING

MESSAGES = [{"role": "user", "content": "Say hello"}]
# Entries are stored by a background writer: how long a test waits for them.
WRITE_WAIT = 5.0


@pytest.fixture
def cached_proxy(create_proxy, rubberduck, through_proxy):
    """cached_proxy(provider, cache=True, **fields) -> Proxy with its cache on; deleted afterwards
    (the suite's block of proxy ports is small)."""
    created = []

    def create(provider: str, cache=True, **fields):
        proxy = create_proxy(provider, cache=cache, **fields)
        created.append(proxy)
        return proxy

    yield create
    for proxy in created:
        rubberduck.api("POST", f"/api/proxies/{proxy.info['id']}/stop")
        status, body = rubberduck.api("DELETE", f"/api/proxies/{proxy.info['id']}")
        assert status in (200, 204), f"deleting {proxy.info['name']}: {status} {body}"


def cache_stats(rubberduck, proxy) -> dict:
    status, stats = rubberduck.api("GET", f"/api/proxies/{proxy.info['id']}/cache")
    assert status == 200, stats
    return stats


def wait_for_entries(rubberduck, proxy, count: int) -> dict:
    deadline = time.monotonic() + WRITE_WAIT
    while True:
        stats = cache_stats(rubberduck, proxy)
        if stats["entries"] >= count:
            return stats
        assert time.monotonic() < deadline, f"the cache never held {count} entries: {stats}"
        time.sleep(0.05)


def wait_listening(proxy) -> None:
    """After a settings change the proxy may restart: wait until its port accepts again."""
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", proxy.info["port"]), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"proxy port {proxy.info['port']} never accepted again"
            time.sleep(0.05)


def twice(rubberduck, mock, proxy, calls: int, run):
    """Runs `run()` (which makes `calls` SDK requests) twice; the first pass reaches the upstream
    once per request, the second pass not at all. Returns both passes' answers."""
    first = run()
    assert len(mock.received()) == calls, [(r.method, r.raw_path) for r in mock.received()]
    wait_for_entries(rubberduck, proxy, calls)
    second = run()
    assert len(mock.received()) == calls, "the second pass must be served from the cache alone"
    stats = cache_stats(rubberduck, proxy)
    assert stats["hits"] == calls and stats["entries"] == calls, stats
    return first, second


# --- OpenAI ----------------------------------------------------------------------------------

def openai_client(proxy, path="/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}{path}", max_retries=0, timeout=30)


def openai_stream(client, model: str) -> dict:
    chunks = list(client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return {"text": text, "chunks": [c.model_dump() for c in chunks]}


def test_openai(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("openai")

    def run():
        with openai_client(proxy) as client:
            chat = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0)
            embedding = client.embeddings.create(model="text-embedding-3-small", input="duck")
        return chat.model_dump(), embedding.model_dump()

    first, second = twice(rubberduck, mock, proxy, 2, run)
    assert first[0]["choices"][0]["message"]["content"] == ANSWER
    assert first[1]["data"][0]["embedding"] == EMBEDDING
    assert second == first


def test_openai_stream(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("openai")

    def run():
        with openai_client(proxy) as client:
            return openai_stream(client, "gpt-4o-mini")

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["text"] == ANSWER
    assert second == first


# --- DeepSeek (the openai SDK, DeepSeek's documented base URL without /v1) --------------------

def test_deepseek(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("deepseek")

    def run():
        with openai_client(proxy, path="") as client:
            return client.chat.completions.create(model="deepseek-chat", messages=MESSAGES).model_dump()

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["choices"][0]["message"]["content"] == ANSWER
    assert second == first


def test_deepseek_stream(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("deepseek")

    def run():
        with openai_client(proxy, path="") as client:
            return openai_stream(client, "deepseek-chat")

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["text"] == ANSWER
    assert second == first


# --- Azure OpenAI ----------------------------------------------------------------------------

def azure_client(proxy) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=proxy.url, api_key="azure-test-key", api_version="2024-10-21",
        azure_deployment="gpt-4o-mini-deploy", max_retries=0, timeout=30,
    )


def test_azure_openai(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("azure_openai")

    def run():
        with azure_client(proxy) as client:
            return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["choices"][0]["message"]["content"] == ANSWER
    assert second == first


def test_azure_openai_stream(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("azure_openai")

    def run():
        with azure_client(proxy) as client:
            return openai_stream(client, "gpt-4o-mini")

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["text"] == ANSWER
    assert second == first


# --- Anthropic -------------------------------------------------------------------------------

def anthropic_client(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=proxy.url, max_retries=0, timeout=30)


def test_anthropic(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("anthropic")

    def run():
        with anthropic_client(proxy) as client:
            return client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES).model_dump()

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["content"][0]["text"] == ANSWER
    assert second == first


def test_anthropic_stream(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("anthropic")

    def run():
        with anthropic_client(proxy) as client:
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES) as stream:
                events = [event.model_dump() for event in stream]
                final = stream.get_final_message().model_dump()
        deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
        return {"deltas": deltas, "events": events, "final": final}

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first["deltas"] == ANSWER_CHUNKS
    assert first["final"]["content"][0]["text"] == ANSWER
    assert second == first


# --- AWS Bedrock (boto3; every pass is signed anew, with a new date) --------------------------

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BEDROCK_BODY = json.dumps({
    "anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": MESSAGES,
})
CONVERSE_MESSAGES = [{"role": "user", "content": [{"text": "Say hello"}]}]


def bedrock_client(proxy):
    return boto3.client(
        "bedrock-runtime", region_name="eu-west-3", endpoint_url=proxy.url,
        aws_access_key_id="AKIDCLIENT", aws_secret_access_key="client-secret",
        config=Config(retries={"max_attempts": 1}, read_timeout=30, connect_timeout=10),
    )


def without_metadata(response: dict) -> dict:
    """The parsed answer without the per-request HTTP metadata (request id, date, ...)."""
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def test_bedrock(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("bedrock", aws_region="us-west-2")

    def run():
        client = bedrock_client(proxy)
        invoked = client.invoke_model(modelId=BEDROCK_MODEL, body=BEDROCK_BODY, contentType="application/json")
        invoke = json.loads(invoked["body"].read())
        converse = without_metadata(client.converse(modelId=BEDROCK_MODEL, messages=CONVERSE_MESSAGES))
        client.close()
        return invoke, converse

    first, second = twice(rubberduck, mock, proxy, 2, run)
    assert first[0]["content"][0]["text"] == ANSWER
    assert first[1]["output"]["message"]["content"][0]["text"] == ANSWER
    assert second == first


def test_bedrock_stream(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("bedrock", aws_region="us-west-2")

    def run():
        client = bedrock_client(proxy)
        invoked = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=BEDROCK_BODY)
        invoke_events = [json.loads(event["chunk"]["bytes"]) for event in invoked["body"]]
        conversed = client.converse_stream(modelId=BEDROCK_MODEL, messages=CONVERSE_MESSAGES)
        converse_events = list(conversed["stream"])
        client.close()
        return {
            "invoke_text": "".join(e["delta"]["text"] for e in invoke_events if e["type"] == "content_block_delta"),
            "converse_text": "".join(e["contentBlockDelta"]["delta"]["text"] for e in converse_events if "contentBlockDelta" in e),
            "invoke_events": invoke_events,
            "converse_events": converse_events,
        }

    first, second = twice(rubberduck, mock, proxy, 2, run)
    assert first["invoke_text"] == ANSWER
    assert first["converse_text"] == ANSWER
    assert second == first


# --- Vertex AI (google-genai) ----------------------------------------------------------------

def vertex_client(proxy) -> genai.Client:
    return genai.Client(
        vertexai=True, project="sdk-project", location="us-central1",
        credentials=Credentials(token="client-token"),
        http_options=types.HttpOptions(base_url=proxy.url, timeout=30_000),
    )


def genai_answer(response) -> dict:
    # sdk_http_response carries the HTTP headers (dates, ids), which no cache replays.
    return response.model_dump(exclude={"sdk_http_response"})


def test_vertex_ai(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("vertex_ai")

    def run():
        client = vertex_client(proxy)  # kept referenced: a collected Client closes its HTTP client
        response = client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
        return response.text, genai_answer(response)

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first[0] == ANSWER
    assert second == first


def test_vertex_ai_stream(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("vertex_ai")

    def run():
        client = vertex_client(proxy)
        chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Say hello"))
        return [c.text for c in chunks], [genai_answer(c) for c in chunks]

    first, second = twice(rubberduck, mock, proxy, 1, run)
    assert first[0] == ANSWER_CHUNKS
    assert second == first


# --- replay-only -----------------------------------------------------------------------------

def test_replay_only_miss_is_a_bad_request_without_upstream_calls(cached_proxy, mock):
    proxy = cached_proxy("openai", cache={"mode": "replay_only"})
    assert proxy.info["cache"]["mode"] == "replay_only", proxy.info

    started = time.monotonic()
    with openai_client(proxy) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert time.monotonic() - started < 5, "a miss is answered at once"
    assert caught.value.status_code == 400
    assert caught.value.code == "not_cached"
    assert caught.value.type == "invalid_request_error"
    assert "cache" in caught.value.message.lower(), caught.value.message
    assert mock.received() == [], "a replay-only proxy never asks the upstream"


def test_replay_only_serves_what_was_recorded(cached_proxy, rubberduck, mock):
    proxy = cached_proxy("openai")
    with openai_client(proxy) as client:
        recorded = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
    wait_for_entries(rubberduck, proxy, 1)
    status, patched = rubberduck.api("PATCH", f"/api/proxies/{proxy.info['id']}", {"cache": {"mode": "replay_only"}})
    assert status == 200 and patched["cache"]["mode"] == "replay_only", patched
    wait_listening(proxy)

    with openai_client(proxy) as client:
        replayed = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES + MESSAGES)

    assert replayed == recorded
    assert len(mock.received()) == 1, "only the recording reached the upstream"
