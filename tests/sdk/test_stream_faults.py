"""Faults inside streams through the official SDKs: what each SDK raises when a proxy ends a
stream with the provider's own error event, cuts its connection, stalls or drips it, and what
the application had been handed before that (exactly the upstream's first pieces).

Every streaming call of every provider is driven the same way (`STREAMS`): a runner yields the
text pieces the SDK hands out, and the mock's event sequence (tests/sdk/mock_upstream.py) says how
many events come before the first piece, so "after N events" is a known number of pieces. Faults
come from a failure-config script, the `X-Rubberduck-Fault` header (with `allow_request_faults`),
and per-test positions (`X-Rubberduck-Scenario`); cache replays are faulted like upstream streams
and a faulted stream is never kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anthropic
import boto3
import botocore.exceptions
import httpx2
import openai
import pytest
import urllib3.exceptions
from botocore.config import Config
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from mock_upstream import ANSWER, ANSWER_CHUNKS

# Stream faults live in the proxy: nothing to check against the bare mock.
pytestmark = pytest.mark.usefixtures("through_proxy")

MESSAGES = [{"role": "user", "content": "Say hello"}]
# What the proxy's injected mid-stream error event says (src/providers/mod.rs).
INJECTED_TEXT = "injected mid-stream by Rubberduck"
FAULT = "X-Rubberduck-Fault"
SCENARIO = "X-Rubberduck-Scenario"
# A bound on every SDK call: a fault that turned into a hang fails the test instead of blocking it.
CALL_TIMEOUT_S = 10
BEDROCK_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
AZURE_DEPLOYMENT = "gpt-4o-mini-deploy"
GEMINI_MODEL = "gemini-2.0-flash"


# --- the SDKs' streaming calls -----------------------------------------------------------------

# (proxy, extra request headers) -> the text pieces the SDK hands out, in order
Runner = Callable[..., Iterator[str]]


def openai_runner(make_client: Callable, model: str) -> Runner:
    def run(proxy, headers: dict) -> Iterator[str]:
        with make_client(proxy) as client:
            stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True, extra_headers=headers)
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

    return run


def openai_client(proxy, max_retries: int = 0, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=max_retries, timeout=CALL_TIMEOUT_S, **kwargs)


def azure_client(proxy) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=proxy.url, api_key="azure-test-key", api_version="2024-10-21",
        azure_deployment=AZURE_DEPLOYMENT, max_retries=0, timeout=CALL_TIMEOUT_S,
    )


def deepseek_client(proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-deepseek-test", base_url=proxy.url, max_retries=0, timeout=CALL_TIMEOUT_S)


def anthropic_messages_stream(proxy, headers: dict) -> Iterator[str]:
    with anthropic.Anthropic(api_key="sk-ant-test", base_url=proxy.url, max_retries=0, timeout=CALL_TIMEOUT_S) as client:
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, extra_headers=headers) as stream:
            yield from stream.text_stream


def bedrock_client(proxy, headers: dict):
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=proxy.url,
        aws_access_key_id="AKIDSTREAMS", aws_secret_access_key="streams-secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=CALL_TIMEOUT_S, connect_timeout=CALL_TIMEOUT_S),
    )

    def add_headers(params, **_):
        params["headers"].update(headers)

    client.meta.events.register("before-call.bedrock-runtime.*", add_headers)
    return client


def bedrock_converse_stream(proxy, headers: dict) -> Iterator[str]:
    client = bedrock_client(proxy, headers)
    try:
        response = client.converse_stream(modelId=BEDROCK_MODEL_ID, messages=[{"role": "user", "content": [{"text": "Say hello"}]}])
        for event in response["stream"]:
            if "contentBlockDelta" in event:
                yield event["contentBlockDelta"]["delta"]["text"]
    finally:
        client.close()


def bedrock_invoke_stream(proxy, headers: dict) -> Iterator[str]:
    client = bedrock_client(proxy, headers)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": MESSAGES}
    try:
        response = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL_ID, body=json.dumps(body))
        for event in response["body"]:
            chunk = json.loads(event["chunk"]["bytes"])
            if chunk["type"] == "content_block_delta":
                yield chunk["delta"]["text"]
    finally:
        client.close()


def genai_stream(proxy, headers: dict) -> Iterator[str]:
    client = genai.Client(
        vertexai=True, project="sdk-project", location="us-central1", credentials=Credentials(token="client-token"),
        http_options=types.HttpOptions(base_url=proxy.url, timeout=CALL_TIMEOUT_S * 1000, headers=headers),
    )
    for chunk in client.models.generate_content_stream(model=GEMINI_MODEL, contents="Say hello"):
        yield chunk.text


# --- what each SDK raises ----------------------------------------------------------------------

def chain(error: BaseException | None) -> str:
    """An exception and its causes, for failure messages."""
    parts = []
    while error is not None:
        parts.append(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
        error = error.__cause__ or error.__context__
    return " <- ".join(parts) or "no exception: the stream finished normally"


def openai_error_event(error: BaseException) -> None:
    # The SDK raises the bare APIError (not a status error: the HTTP status was 200) with the
    # event's message and its `error` object as the body.
    assert type(error) is openai.APIError, chain(error)
    assert INJECTED_TEXT in error.message, error.message
    assert error.body["type"] == "server_error", error.body


def openai_disconnect(error: BaseException) -> None:
    assert type(error) is openai.APIConnectionError, chain(error)
    assert type(error.__cause__) is httpx2.RemoteProtocolError, chain(error)
    assert "incomplete chunked read" in str(error.__cause__), chain(error)


def anthropic_error_event(error: BaseException) -> None:
    # anthropic 2.x picks the class by HTTP status and error type; an `event: error` on a 200
    # stream is an APIStatusError (OverloadedError is only for status 529) carrying the event.
    assert type(error) is anthropic.APIStatusError, chain(error)
    assert error.status_code == 200
    assert error.body["type"] == "error", error.body
    assert error.body["error"]["type"] == "overloaded_error", error.body
    assert INJECTED_TEXT in error.body["error"]["message"], error.body


def anthropic_disconnect(error: BaseException) -> None:
    # The SDK does not wrap an error while reading a stream: httpx's own reaches the caller.
    assert type(error) is httpx2.RemoteProtocolError, chain(error)
    assert "incomplete chunked read" in str(error), chain(error)


def bedrock_error_event(error: BaseException) -> None:
    assert type(error) is botocore.exceptions.EventStreamError, chain(error)
    assert error.response["Error"]["Code"] == "throttlingException", error.response
    assert INJECTED_TEXT in error.response["Error"]["Message"], error.response


def bedrock_disconnect(error: BaseException) -> None:
    # botocore's event stream reads urllib3 directly: urllib3's error reaches the caller.
    assert type(error) is urllib3.exceptions.ProtocolError, chain(error)
    assert "Response ended prematurely" in str(error), chain(error)


def genai_error_event(error: BaseException) -> None:
    # A chunk `{"error": {...}}` becomes the APIError subclass for its code: 503 is a ServerError.
    assert type(error) is errors.ServerError, chain(error)
    assert error.code == 503
    assert error.status == "UNAVAILABLE"
    assert INJECTED_TEXT in error.message, error.message


def genai_disconnect(error: BaseException) -> None:
    assert type(error) is httpx2.RemoteProtocolError, chain(error)
    assert "incomplete chunked read" in str(error), chain(error)


@dataclass(frozen=True)
class StreamCall:
    """One SDK streaming call and what the mock's answer to it looks like."""

    name: str
    provider: str
    fields: tuple  # extra proxy fields, as pairs
    run: Runner
    # Events of the mock's answer before its first text piece, and in all.
    preamble: int
    events: int
    error_event: Callable[[BaseException], None]
    disconnect: Callable[[BaseException], None]

    def after_pieces(self, pieces: int) -> int:
        """The number of whole events after which `pieces` text pieces have gone out."""
        return self.preamble + pieces


STREAMS = [
    # role chunk, 5 content chunks, finish chunk, [DONE]
    StreamCall("openai", "openai", (), openai_runner(openai_client, "gpt-4o-mini"), 1, 8, openai_error_event, openai_disconnect),
    StreamCall("azure_openai", "azure_openai", (), openai_runner(azure_client, "gpt-4o-mini"), 1, 8, openai_error_event, openai_disconnect),
    StreamCall("deepseek", "deepseek", (), openai_runner(deepseek_client, "deepseek-chat"), 1, 8, openai_error_event, openai_disconnect),
    # message_start, content_block_start, ping, 5 deltas, content_block_stop, message_delta, message_stop
    StreamCall("anthropic", "anthropic", (), anthropic_messages_stream, 3, 10, anthropic_error_event, anthropic_disconnect),
    # messageStart, 5 contentBlockDelta, contentBlockStop, messageStop, metadata
    StreamCall("bedrock_converse_stream", "bedrock", (("aws_region", "us-east-1"),), bedrock_converse_stream, 1, 9,
               bedrock_error_event, bedrock_disconnect),
    # Anthropic's events, one frame each
    StreamCall("bedrock_invoke_stream", "bedrock", (("aws_region", "us-east-1"),), bedrock_invoke_stream, 3, 10,
               bedrock_error_event, bedrock_disconnect),
    # one chunk per piece
    StreamCall("vertex_ai_genai", "vertex_ai", (), genai_stream, 0, 5, genai_error_event, genai_disconnect),
]
every_stream = pytest.mark.parametrize("call", STREAMS, ids=[c.name for c in STREAMS])


@dataclass
class Outcome:
    pieces: list[str]
    error: BaseException | None
    elapsed: float
    # When each piece arrived, from the call's start (seconds).
    arrivals: list[float]


def drain(call: StreamCall, proxy, headers: dict | None = None) -> Outcome:
    """Runs the streaming call to its end or its exception: what the SDK handed out before."""
    pieces, arrivals, error = [], [], None
    start = time.monotonic()
    try:
        for piece in call.run(proxy, dict(headers or {})):
            pieces.append(piece)
            arrivals.append(time.monotonic() - start)
    except Exception as raised:  # noqa: BLE001 - each test asserts the exact type
        error = raised
    return Outcome(pieces, error, time.monotonic() - start, arrivals)


# --- proxies, failure configs, logs --------------------------------------------------------------

class Proxies:
    """One proxy per (provider, cache) for the whole module, made on first use."""

    def __init__(self, create_proxy, rubberduck):
        self.create_proxy = create_proxy
        self.rubberduck = rubberduck
        self.made: dict = {}

    def of(self, call: StreamCall, cache: bool | dict = False):
        key = (call.provider, call.fields, json.dumps(cache, sort_keys=True))
        if key not in self.made:
            self.made[key] = self.create_proxy(call.provider, cache=cache, **dict(call.fields))
        return self.made[key]

    def reset(self) -> None:
        for proxy in self.made.values():
            set_failures(self.rubberduck, proxy, {})
            if proxy.info["cache"]["enabled"]:
                status, body = self.rubberduck.api("DELETE", f"/api/proxies/{proxy.info['id']}/cache")
                assert status == 200, body


@pytest.fixture(scope="module")
def proxies(create_proxy, rubberduck):
    return Proxies(create_proxy, rubberduck)


@pytest.fixture(autouse=True)
def _clean(proxies):
    """Every test starts with no failure config and empty caches."""
    proxies.reset()
    yield


def set_failures(rubberduck, proxy, config: dict) -> dict:
    """Replaces the proxy's failure config (what `config` leaves out takes its default)."""
    status, saved = rubberduck.api("PUT", f"/api/proxies/{proxy.info['id']}/failure-config", config)
    assert status == 200, f"PUT failure-config {config}: {status} {saved}"
    return saved


def cache_stats(rubberduck, proxy) -> dict:
    status, stats = rubberduck.api("GET", f"/api/proxies/{proxy.info['id']}/cache")
    assert status == 200, stats
    return stats


def wait_for_entries(rubberduck, proxy, count: int) -> dict:
    """The cache stats once the cache holds `count` entries: an answer is stored when the
    upstream's last byte arrived, which may be just after the SDK stopped reading (at `[DONE]`)."""
    deadline = time.monotonic() + 10
    while True:
        stats = cache_stats(rubberduck, proxy)
        if stats["entries"] >= count:
            return stats
        assert time.monotonic() < deadline, f"the cache never held {count} entries: {stats}"
        time.sleep(0.02)


def logs_of(rubberduck, proxy, count: int) -> list[dict]:
    """The proxy's log rows, oldest first, once `count` of them are written (in the background)."""
    deadline = time.monotonic() + 10
    while True:
        status, body = rubberduck.api("GET", f"/api/logs?proxy_id={proxy.info['id']}&limit=200")
        assert status == 200, body
        if body["total"] >= count or time.monotonic() > deadline:
            assert body["total"] == count, [(row["failure"], row["scenario"]) for row in body["logs"]]
            return body["logs"][::-1]
        time.sleep(0.05)


def assert_no_rubberduck_headers(mock) -> None:
    for recorded in mock.received():
        sent = [name for name in recorded.header_names() if name.startswith("x-rubberduck")]
        assert sent == [], f"{recorded.raw_path} reached the upstream with {sent}"


def assert_whole(outcome: Outcome) -> None:
    assert outcome.error is None, chain(outcome.error)
    assert outcome.pieces == ANSWER_CHUNKS
    assert "".join(outcome.pieces) == ANSWER


# --- 1-3: error events and disconnects, and what came before them -------------------------------

@every_stream
def test_an_error_event_mid_stream_is_the_sdks_own_error_after_the_upstreams_first_pieces(call, proxies, rubberduck, mock):
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"script": [{"stream_error_after": call.after_pieces(2)}]})

    outcome = drain(call, proxy)

    call.error_event(outcome.error)
    assert outcome.pieces == ANSWER_CHUNKS[:2], "what the SDK handed out before the error event"
    assert len(mock.received()) == 1, "the stream came from the upstream"
    assert_whole(drain(call, proxy))  # the script's end: the next call passes


@every_stream
def test_a_disconnect_mid_stream_is_the_sdks_connection_error_after_the_upstreams_first_pieces(call, proxies, rubberduck, mock):
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"script": [{"stream_disconnect_after": call.after_pieces(2)}]})

    outcome = drain(call, proxy)

    call.disconnect(outcome.error)
    assert outcome.pieces == ANSWER_CHUNKS[:2], "what the SDK handed out before the cut"
    assert len(mock.received()) == 1
    assert_whole(drain(call, proxy))


@pytest.mark.parametrize("pieces", [0, 1, 4])
@pytest.mark.parametrize("kind", ["stream_error_after", "stream_disconnect_after"])
@pytest.mark.parametrize("call", [c for c in STREAMS if c.name in ("openai", "anthropic", "bedrock_converse_stream", "vertex_ai_genai")],
                         ids=lambda c: c.name)
def test_the_text_before_a_fault_is_exactly_the_upstreams_first_pieces(call, kind, pieces, proxies, rubberduck):
    """For a fault after any number of events, the SDK hands out the pieces those events carried."""
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"script": [{kind: call.after_pieces(pieces)}]})

    outcome = drain(call, proxy)

    (call.error_event if kind == "stream_error_after" else call.disconnect)(outcome.error)
    assert outcome.pieces == ANSWER_CHUNKS[:pieces]


def test_openai_sees_every_chunk_before_the_cut_including_the_role_chunk(proxies, rubberduck):
    """The raw chunks, not only their text: after 3 events the SDK yielded exactly the role
    chunk and two content chunks."""
    proxy = proxies.of(STREAMS[0])
    set_failures(rubberduck, proxy, {"script": [{"stream_disconnect_after": 3}]})
    chunks = []
    with openai_client(proxy) as client, pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            chunks.append(chunk)
    assert [(c.choices[0].delta.role, c.choices[0].delta.content) for c in chunks] == [
        ("assistant", ""), (None, "Hello"), (None, " from"),
    ]


@pytest.mark.parametrize("fault", [{"stream_disconnect_after": 0}, {"connection": "close_after_head"}], ids=["after-0-events", "close-after-head"])
def test_a_cut_before_the_first_event_still_sends_the_head_so_the_sdk_does_not_retry_it(fault, proxies, rubberduck, mock):
    """The head goes out before the cut: the SDK's call returns a stream (status 200) that then
    fails while reading, a mid-stream failure it does not retry. Without the head it would be a
    failed request ("server disconnected without sending a response"), retried max_retries times."""
    proxy = proxies.of(STREAMS[0])
    set_failures(rubberduck, proxy, {"script": [fault]})

    with openai_client(proxy, max_retries=2) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert raw.status_code == 200
        with pytest.raises(openai.APIConnectionError) as caught:
            list(raw.parse())
    openai_disconnect(caught.value)
    assert len(mock.received()) == 1, "one request, not retried"


# --- 4: stalls and drips delay but complete -------------------------------------------------------

@every_stream
def test_a_stall_delays_the_stream_but_it_completes(call, proxies, rubberduck):
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"script": [{"stream_stall_after": 1, "seconds": 0.6}]})

    outcome = drain(call, proxy)

    assert_whole(outcome)
    assert 0.6 <= outcome.elapsed < CALL_TIMEOUT_S, outcome.elapsed


def test_a_stall_comes_after_the_events_it_names(proxies, rubberduck):
    """stream_stall_after: 2 on OpenAI (role chunk, "Hello"): "Hello" arrives at once, " from" 0.6 s later."""
    call = STREAMS[0]
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"script": [{"stream_stall_after": 2, "seconds": 0.6}]})

    outcome = drain(call, proxy)

    assert_whole(outcome)
    first, second = outcome.arrivals[:2]
    assert first < 0.6, f"the first piece came before the stall: {outcome.arrivals}"
    assert second - first >= 0.55, f"the stall sits between the first two pieces: {outcome.arrivals}"
    assert max(b - a for a, b in zip(outcome.arrivals[1:], outcome.arrivals[2:])) < 0.5, outcome.arrivals


@every_stream
def test_a_drip_spaces_every_event_and_the_stream_completes(call, proxies, rubberduck):
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"script": [{"stream_drip_ms": 150}]})

    outcome = drain(call, proxy)

    assert_whole(outcome)
    assert outcome.elapsed >= (call.events - 1) * 0.15, outcome.elapsed
    gaps = [b - a for a, b in zip(outcome.arrivals, outcome.arrivals[1:])]
    assert min(gaps) >= 0.1, f"each piece is its own event, dripped 150 ms apart: {gaps}"


# --- 5: faulted streams are not cached; cache replays are faulted alike ---------------------------

@every_stream
def test_a_broken_stream_is_not_cached_and_a_cached_replay_breaks_the_same_way(call, proxies, rubberduck, mock):
    proxy = proxies.of(call, cache=True)
    before = cache_stats(rubberduck, proxy)  # hits and misses count since the proxy started
    after = call.after_pieces(2)
    set_failures(rubberduck, proxy, {"script": [
        {"stream_disconnect_after": after}, {"stream_error_after": after}, "pass",
        {"stream_disconnect_after": after}, {"stream_error_after": after},
    ]})

    cut = drain(call, proxy)
    call.disconnect(cut.error)
    ended = drain(call, proxy)
    call.error_event(ended.error)
    assert cache_stats(rubberduck, proxy)["entries"] == 0, "neither broken stream was kept"
    assert len(mock.received()) == 2, "both went upstream"

    assert_whole(drain(call, proxy))
    assert len(mock.received()) == 3, "after two broken streams, the next identical request goes upstream"
    assert wait_for_entries(rubberduck, proxy, 1)["entries"] == 1

    replay_cut = drain(call, proxy)
    call.disconnect(replay_cut.error)
    replay_ended = drain(call, proxy)
    call.error_event(replay_ended.error)
    assert (replay_cut.pieces, replay_ended.pieces) == (cut.pieces, ended.pieces) == (ANSWER_CHUNKS[:2], ANSWER_CHUNKS[:2])
    assert_whole(drain(call, proxy))
    assert len(mock.received()) == 3, "the replays came from the cache"
    stats = cache_stats(rubberduck, proxy)
    counted = (stats["entries"], stats["hits"] - before["hits"], stats["misses"] - before["misses"])
    assert counted == (1, 3, 3), (before, stats)


@pytest.mark.parametrize("fault", [{"stream_stall_after": 1, "seconds": 0.8}, {"stream_drip_ms": 150}], ids=["stall", "drip"])
def test_a_stalled_or_dripped_stream_is_not_replayed_with_its_waits(fault, proxies, rubberduck, mock):
    """With stream_replay "recorded" the cache replays a stream at its recorded pace: an injected
    wait kept with it would come back on every replay, long after the fault. So a stream with a
    fault in it is not kept, however whole it arrived."""
    call = STREAMS[0]
    proxy = proxies.of(call, cache={"enabled": True, "stream_replay": "recorded"})
    set_failures(rubberduck, proxy, {"script": [fault]})

    slowed = drain(call, proxy)
    assert_whole(slowed)
    assert slowed.elapsed >= 0.8, slowed.elapsed

    assert_whole(drain(call, proxy))
    assert len(mock.received()) == 2, "the faulted stream was not kept: the next request went upstream"
    wait_for_entries(rubberduck, proxy, 1)
    replayed = drain(call, proxy)
    assert_whole(replayed)
    assert len(mock.received()) == 2, "the clean one was kept"
    assert replayed.elapsed < 0.6, f"the replay keeps the upstream's pace, not the fault's: {replayed.elapsed:.2f} s"


# --- 6: the fault header through the SDKs -------------------------------------------------------

@every_stream
def test_the_fault_header_breaks_one_stream_when_allowed_and_never_reaches_the_upstream(call, proxies, rubberduck, mock):
    proxy = proxies.of(call)
    set_failures(rubberduck, proxy, {"allow_request_faults": True})
    after = call.after_pieces(1)

    ended = drain(call, proxy, {FAULT: f"error-event-after={after}"})
    call.error_event(ended.error)
    cut = drain(call, proxy, {FAULT: f"disconnect-after={after}"})
    call.disconnect(cut.error)
    assert ended.pieces == cut.pieces == ANSWER_CHUNKS[:1]

    assert_whole(drain(call, proxy))  # without the header
    assert len(mock.received()) == 3
    assert_no_rubberduck_headers(mock)


@every_stream
def test_the_fault_header_is_ignored_unless_allowed(call, proxies, rubberduck, mock):
    proxy = proxies.of(call)
    assert set_failures(rubberduck, proxy, {})["allow_request_faults"] is False

    assert_whole(drain(call, proxy, {FAULT: f"disconnect-after={call.after_pieces(1)}"}))
    assert_whole(drain(call, proxy, {FAULT: "error-event-after=1"}))
    assert len(mock.received()) == 2
    assert_no_rubberduck_headers(mock)


def test_openai_default_headers_carry_the_fault_on_every_call(proxies, rubberduck, mock):
    proxy = proxies.of(STREAMS[0])
    set_failures(rubberduck, proxy, {"allow_request_faults": True})

    with openai_client(proxy, default_headers={FAULT: "429"}) as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["x-rubberduck-injected"] == "error_injection"
    assert mock.received() == [], "an injected status never reaches the upstream"

    pieces = []
    with openai_client(proxy, default_headers={FAULT: "disconnect-after=2"}) as client:
        for _ in range(2):
            with pytest.raises(openai.APIConnectionError):
                for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                    pieces.append(chunk.choices[0].delta.content)
    assert pieces == ["", "Hello"] * 2
    assert len(mock.received()) == 2
    assert_no_rubberduck_headers(mock)


# --- 7: log rows name the fault and the scenario ---------------------------------------------------

SCRIPTED_KINDS = ["stream_error", "stream_disconnect", "stream_stall", "stream_drip", None]


@every_stream
def test_log_rows_carry_the_fault_kind_and_the_scenario(call, create_proxy, rubberduck, mock):
    """Two scenarios interleaved each run the whole script from its start (and so does the
    proxy-wide position, without the header); every row names its fault and its scenario."""
    proxy = create_proxy(call.provider, **dict(call.fields))  # its own: its log holds only these rows
    after = call.after_pieces(1)
    set_failures(rubberduck, proxy, {"script": [
        {"stream_error_after": after}, {"stream_disconnect_after": after},
        {"stream_stall_after": 1, "seconds": 0.05}, {"stream_drip_ms": 5},
    ]})
    scenarios = [f"{call.name}-a", f"{call.name}-b"]

    for step in range(len(SCRIPTED_KINDS)):
        for scenario in scenarios:
            outcome = drain(call, proxy, {SCENARIO: scenario})
            if step == 0:
                call.error_event(outcome.error)
            elif step == 1:
                call.disconnect(outcome.error)
            else:
                assert_whole(outcome)
    call.error_event(drain(call, proxy).error)

    rows = logs_of(rubberduck, proxy, 2 * len(SCRIPTED_KINDS) + 1)
    for scenario in scenarios:
        mine = [row for row in rows if row["scenario"] == scenario]
        assert [row["failure"] for row in mine] == SCRIPTED_KINDS, (scenario, [(r["failure"], r["scenario"]) for r in rows])
        assert all(row["status"] == 200 and row["stream"] is True for row in mine), mine
    unscoped = [row for row in rows if row["scenario"] is None]
    assert [row["failure"] for row in unscoped] == ["stream_error"]
    assert len(mock.received()) == 2 * len(SCRIPTED_KINDS) + 1, "every scripted stream came from the upstream"
    assert_no_rubberduck_headers(mock)

    status, filtered = rubberduck.api("GET", f"/api/logs?proxy_id={proxy.info['id']}&failure=stream_disconnect")
    assert status == 200, filtered
    assert sorted(row["scenario"] for row in filtered["logs"]) == scenarios, "the failure filter finds them"


def test_eight_parallel_tests_each_see_two_429s_then_a_stream_cut_after_3_chunks_and_their_retry_code_copes(create_proxy, rubberduck, mock):
    """The issue's story as an application test would write it: "my first two calls get 429 and
    my third stream dies after 3 chunks", eight such tests at once against one proxy, each under
    its own scenario id, each with the app's own retry loop; the logs tell the same story."""
    from concurrent.futures import ThreadPoolExecutor

    proxy = create_proxy("openai")  # its own: its log holds only these rows
    set_failures(rubberduck, proxy, {"script": [{"status": 429, "times": 2}, {"stream_disconnect_after": 3}]})

    def app_answer(test_id: str) -> list[str]:
        """The application's retry code: try again on a 429 or a broken stream."""
        attempts = []
        with openai_client(proxy, default_headers={SCENARIO: test_id}) as client:
            for _ in range(6):
                pieces = []
                try:
                    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
                    for chunk in stream:
                        pieces.extend(c.delta.content for c in chunk.choices if c.delta.content)
                except openai.RateLimitError as error:
                    attempts.append(f"429 {error.status_code}")
                    continue
                except openai.APIConnectionError:
                    attempts.append(f"cut after {pieces}")
                    continue
                attempts.append("".join(pieces))
                return attempts
        return attempts

    tests = [f"parallel-test-{n}" for n in range(8)]
    with ThreadPoolExecutor(max_workers=len(tests)) as pool:
        seen = dict(zip(tests, pool.map(app_answer, tests)))
    for test_id in tests:
        assert seen[test_id] == ["429 429", "429 429", f"cut after {ANSWER_CHUNKS[:2]}", ANSWER], (test_id, seen[test_id])

    rows = logs_of(rubberduck, proxy, 4 * len(tests))
    for test_id in tests:
        story = [(row["status"], row["failure"]) for row in rows if row["scenario"] == test_id]
        assert story == [(429, "error_injection"), (429, "error_injection"), (200, "stream_disconnect"), (200, None)], (test_id, story)
    assert len(mock.received()) == 2 * len(tests), "the 429s never reached the upstream; both streams did"
    assert_no_rubberduck_headers(mock)
