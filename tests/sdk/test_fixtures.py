"""Fixtures through the official SDKs: answers recorded by one server into fixture files replay on
another server started on a fresh data dir in `replay_only`, identically (streams included:
SSE and Bedrock event streams) and with no upstream request; a changed prompt is an error the SDK
raises; recording unchanged answers again leaves the files byte for byte; no credential is
written; cassettes keep their own answers; export and import carry a cache to another server.

Also measures (printed with `-s`, and written to `fixtures-measurements.txt` under the test's
tmp dir): the size of the fixtures of a 100-call suite and how long loading 10,000 fixture files
takes.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import anthropic
import boto3
import botocore.exceptions
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.oauth2.credentials import Credentials

from conftest import Proxy, new_proxy, wait_listening
from mock_upstream import ANSWER, ANSWER_CHUNKS

PROVIDERS = ("openai", "deepseek", "azure_openai", "anthropic", "bedrock", "vertex_ai")
PROMPT = "Say hello"
# Fixture files and log entries are written in the background: how long a test waits for them.
WRITE_WAIT = 15.0

# Credential canaries: unique values that must never be written anywhere.
_TAG = uuid.uuid4().hex[:16]
OPENAI_KEY = f"sk-canary-openai-{_TAG}"
DEEPSEEK_KEY = f"sk-canary-deepseek-{_TAG}"
AZURE_KEY = f"canary-azure-api-key-{_TAG}"
ANTHROPIC_KEY = f"sk-ant-canary-{_TAG}"
ANTHROPIC_X_API_KEY = f"sk-ant-canary-x-api-key-{_TAG}"
AWS_ACCESS_KEY = f"AKIACANARY{_TAG.upper()}"
AWS_SECRET_KEY = f"canary-aws-secret-{_TAG}"
AWS_SESSION_TOKEN = f"canary-aws-session-token-{_TAG}"
VERTEX_TOKEN = f"ya29.canary-vertex-{_TAG}"
CANARIES = (
    OPENAI_KEY, DEEPSEEK_KEY, AZURE_KEY, ANTHROPIC_KEY, ANTHROPIC_X_API_KEY,
    AWS_ACCESS_KEY, AWS_SECRET_KEY, AWS_SESSION_TOKEN, VERTEX_TOKEN,
)
# Header names a fixture never holds (it records no request header at all).
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-amz-security-token", "x-aws-")

OPENAI_MODEL = "gpt-4o-mini"
DEEPSEEK_MODEL = "deepseek-chat"
AZURE_DEPLOYMENT = "gpt-4o-mini-deploy"
AZURE_API_VERSION = "2024-10-21"
ANTHROPIC_MODEL = "claude-haiku-4-5"
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
VERTEX_MODEL = "gemini-2.0-flash"


# --- the SDKs, pointed at a proxy ---------------------------------------------------------------

def openai_style_client(provider: str, url: str, headers: dict[str, str]):
    if provider == "azure_openai":
        return openai.AzureOpenAI(
            azure_endpoint=url, api_key=AZURE_KEY, api_version=AZURE_API_VERSION,
            azure_deployment=AZURE_DEPLOYMENT, max_retries=0, timeout=30, default_headers=headers,
        )
    if provider == "deepseek":  # DeepSeek's documented base URL has no /v1
        return openai.OpenAI(api_key=DEEPSEEK_KEY, base_url=url, max_retries=0, timeout=30, default_headers=headers)
    return openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{url}/v1", max_retries=0, timeout=30, default_headers=headers)


def bedrock_client(url: str, headers: dict[str, str]):
    client = boto3.client(
        "bedrock-runtime", region_name="eu-west-3", endpoint_url=url,
        aws_access_key_id=AWS_ACCESS_KEY, aws_secret_access_key=AWS_SECRET_KEY,
        aws_session_token=AWS_SESSION_TOKEN,
        config=Config(retries={"max_attempts": 1}, read_timeout=30, connect_timeout=10),
    )
    if headers:
        def add_headers(request, **_):
            for name, value in headers.items():
                request.headers[name] = value

        client.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return client


def vertex_client(url: str, headers: dict[str, str]) -> genai.Client:
    return genai.Client(
        vertexai=True, project="sdk-project", location="us-central1",
        credentials=Credentials(token=VERTEX_TOKEN),
        http_options=types.HttpOptions(base_url=url, timeout=30_000, headers=headers or None),
    )


def client_for(provider: str, url: str, headers: dict[str, str] | None = None):
    headers = dict(headers or {})
    if provider in ("openai", "deepseek", "azure_openai"):
        return openai_style_client(provider, url, headers)
    if provider == "anthropic":
        # anthropic 2.x authenticates with Bearer; x-api-key (older SDKs, curl) is a canary too.
        return anthropic.Anthropic(
            api_key=ANTHROPIC_KEY, base_url=url, max_retries=0, timeout=30,
            default_headers={"x-api-key": ANTHROPIC_X_API_KEY, **headers},
        )
    if provider == "bedrock":
        return bedrock_client(url, headers)
    if provider == "vertex_ai":
        return vertex_client(url, headers)
    raise ValueError(provider)


# Each call: (client, prompt) -> what the SDK made of the answer: "text" (for a stream, its deltas
# joined) and everything else that must replay identically ("events": the parsed event sequence).

def openai_plain(client, prompt: str, model: str = OPENAI_MODEL) -> dict:
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0
    )
    return {"text": chat.choices[0].message.content, "answer": chat.model_dump()}


def openai_stream(client, prompt: str, model: str = OPENAI_MODEL) -> dict:
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return {"text": text, "events": [c.model_dump() for c in chunks]}


def anthropic_plain(client, prompt: str) -> dict:
    message = client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": prompt}]
    )
    return {"text": message.content[0].text, "answer": message.model_dump()}


def anthropic_stream(client, prompt: str) -> dict:
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        events = [event.model_dump() for event in stream]
        final = stream.get_final_message().model_dump()
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    return {"text": text, "events": events, "final": final}


def without_metadata(response: dict) -> dict:
    """boto3's parsed answer without the per-request HTTP metadata (request id, date)."""
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def bedrock_converse(client, prompt: str) -> dict:
    answer = without_metadata(client.converse(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
    ))
    return {"text": answer["output"]["message"]["content"][0]["text"], "answer": answer}


def bedrock_converse_stream(client, prompt: str) -> dict:
    response = client.converse_stream(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
    )
    events = list(response["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    return {"text": text, "events": events}


def bedrock_invoke_stream(client, prompt: str) -> dict:
    body = json.dumps({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
    })
    response = client.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=body)
    events = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    return {"text": text, "events": events}


def genai_answer(response) -> dict:
    # sdk_http_response carries the HTTP headers (dates, ids), which no cache replays.
    return response.model_dump(exclude={"sdk_http_response"})


def vertex_plain(client, prompt: str) -> dict:
    response = client.models.generate_content(model=VERTEX_MODEL, contents=prompt)
    return {"text": response.text, "answer": genai_answer(response)}


def vertex_stream(client, prompt: str) -> dict:
    chunks = list(client.models.generate_content_stream(model=VERTEX_MODEL, contents=prompt))
    return {"text": "".join(c.text for c in chunks), "events": [genai_answer(c) for c in chunks]}


Call = Callable[[object, str], dict]
# Per provider: its plain calls and its streamed calls, by name.
CALLS: dict[str, dict[str, Call]] = {
    "openai": {"plain": openai_plain, "stream": openai_stream},
    "deepseek": {"plain": partial(openai_plain, model=DEEPSEEK_MODEL), "stream": partial(openai_stream, model=DEEPSEEK_MODEL)},
    "azure_openai": {"plain": openai_plain, "stream": openai_stream},
    "anthropic": {"plain": anthropic_plain, "stream": anthropic_stream},
    "bedrock": {"plain": bedrock_converse, "stream": bedrock_converse_stream, "invoke-stream": bedrock_invoke_stream},
    "vertex_ai": {"plain": vertex_plain, "stream": vertex_stream},
}
PROXY_FIELDS = {"bedrock": {"aws_region": "us-west-2"}}
# The errors the SDKs raise for an HTTP error answer.
SDK_ERRORS = (openai.APIStatusError, anthropic.APIStatusError, botocore.exceptions.ClientError, genai_errors.APIError)


def close(client) -> None:
    closer = getattr(client, "close", None)
    if callable(closer):
        closer()


def run_calls(provider: str, url: str, prompt: str = PROMPT, headers: dict[str, str] | None = None) -> dict[str, dict]:
    """Every call of the provider once, through one client; the answers by call name."""
    client = client_for(provider, url, headers)  # kept referenced: a collected genai Client closes
    try:
        return {name: call(client, prompt) for name, call in CALLS[provider].items()}
    finally:
        close(client)


def total_calls() -> int:
    return sum(len(calls) for calls in CALLS.values())


# --- servers, proxies, files ---------------------------------------------------------------------

@dataclass
class Bench:
    """One server with a proxy per provider."""

    server: object
    proxies: dict[str, Proxy] = field(default_factory=dict)

    def add(self, mock, provider: str, cache: dict, **fields) -> Proxy:
        proxy = new_proxy(self.server, mock, provider, cache, **{**PROXY_FIELDS.get(provider, {}), **fields})
        self.proxies[provider] = proxy
        return proxy


def bench(server, mock, cache_of: Callable[[str], dict], providers=PROVIDERS) -> Bench:
    made = Bench(server)
    for provider in providers:
        proxy = made.add(mock, provider, cache_of(provider))
        for name, value in cache_of(provider).items():
            assert proxy.info["cache"][name] == value, (name, proxy.info["cache"])
    return made


def fixture_files(root: Path) -> dict[str, bytes]:
    """Every fixture file under `root`, by its path relative to it, with its bytes."""
    if not root.exists():
        return {}
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.json"))}


def wait_for_files(root: Path, count: int) -> dict[str, bytes]:
    """Until `count` fixture files are under `root` and all of them parse (they are written
    atomically, so a half-written file would be a bug)."""
    deadline = time.monotonic() + WRITE_WAIT
    while True:
        files = fixture_files(root)
        if len(files) >= count:
            for name, data in files.items():
                json.loads(data)
            assert len(files) == count, f"{root}: expected {count} fixture files, found {sorted(files)}"
            return files
        assert time.monotonic() < deadline, f"{root}: {len(files)} of {count} fixture files after {WRITE_WAIT} s: {sorted(files)}"
        time.sleep(0.05)


def wait_for_entries(server, proxy: Proxy, count: int) -> dict:
    deadline = time.monotonic() + WRITE_WAIT
    while True:
        status, stats = server.api("GET", f"/api/proxies/{proxy.info['id']}/cache")
        assert status == 200, stats
        if stats["entries"] >= count:
            assert stats["entries"] == count, stats
            return stats
        assert time.monotonic() < deadline, f"the cache never held {count} entries: {stats}"
        time.sleep(0.05)


def logs_of(server, proxy: Proxy, count: int) -> list[dict]:
    """The proxy's log entries once `count` of them are written."""
    deadline = time.monotonic() + WRITE_WAIT
    while True:
        status, body = server.api("GET", f"/api/logs?proxy_id={proxy.info['id']}&limit=100")
        assert status == 200, body
        if body["total"] >= count or time.monotonic() > deadline:
            assert body["total"] == count, body
            return body["logs"]
        time.sleep(0.05)


def assert_same_answers(replayed: dict[str, dict], recorded: dict[str, dict], provider: str) -> None:
    assert replayed.keys() == recorded.keys()
    for name, answer in recorded.items():
        assert replayed[name]["text"] == answer["text"], f"{provider} {name}"
        assert replayed[name] == answer, f"{provider} {name}: the replay differs from the recording"


def assert_recorded_answer(answers: dict[str, dict], text: str = ANSWER) -> None:
    for name, answer in answers.items():
        assert answer["text"] == text, (name, answer["text"])
        if "events" in answer:
            assert len(answer["events"]) > 1, f"{name}: a stream of one event"


def no_rubberduck_headers(mock) -> None:
    for request in mock.received():
        sent = [h for h in request.header_names() if h.startswith("x-rubberduck")]
        assert not sent, f"the upstream saw {sent} on {request.raw_path}"


def record(tmp_path: Path, fresh_rubberduck, mock):
    """Server A recording every provider's calls into tmp/fixtures/<provider> (read_write)."""
    root = tmp_path / "fixtures"
    server = fresh_rubberduck()
    made = bench(server, mock, lambda p: {"mode": "read_write", "fixtures_dir": str(root / p)})
    answers = {provider: run_calls(provider, proxy.url) for provider, proxy in made.proxies.items()}
    for provider in PROVIDERS:
        assert_recorded_answer(answers[provider])
        wait_for_files(root / provider, len(CALLS[provider]))
    assert len(mock.received()) == total_calls(), [(r.method, r.raw_path) for r in mock.received()]
    return root, made, answers


# --- 1. record, then replay offline on a fresh server ----------------------------------------

def test_recorded_fixtures_replay_on_a_fresh_server_without_the_upstream(tmp_path, fresh_rubberduck, mock):
    root, recorder, recorded = record(tmp_path, fresh_rubberduck, mock)
    files = {provider: fixture_files(root / provider) for provider in PROVIDERS}
    recorder.server.stop()
    mock.clear()

    replayer = bench(fresh_rubberduck(), mock, lambda p: {"mode": "replay_only", "fixtures_dir": str(root / p)})
    for provider, proxy in replayer.proxies.items():
        status, stats = replayer.server.api("GET", f"/api/proxies/{proxy.info['id']}/cache")
        assert status == 200, stats
        assert stats["fixtures"]["loaded"] == len(CALLS[provider]), stats
        assert stats["fixtures"]["rejected"] == [], stats
        replayed = run_calls(provider, proxy.url)
        assert_same_answers(replayed, recorded[provider], provider)

    assert mock.received() == [], "replaying must not reach the upstream"
    for provider, proxy in replayer.proxies.items():
        entries = logs_of(replayer.server, proxy, len(CALLS[provider]))
        assert [e["cache"] for e in entries] == ["hit"] * len(CALLS[provider]), (provider, entries)
        assert all(e["status"] == 200 and e["failure"] is None for e in entries), entries
        assert sorted(e["stream"] for e in entries) == sorted(name != "plain" for name in CALLS[provider])
    # Replaying wrote nothing.
    assert {provider: fixture_files(root / provider) for provider in PROVIDERS} == files


def test_a_recorded_suite_replays_from_a_config_file_with_no_upstream_and_no_login(tmp_path, fresh_rubberduck, mock):
    """The CI recipe: fixtures recorded through proxies, then `rubberduck serve --config` on a
    fresh data dir in replay_only mode answers the same calls, streams included, with zero
    upstream requests; a changed prompt is an error the SDK raises, not a network call."""
    root, recorder, recorded = record(tmp_path, fresh_rubberduck, mock)
    recorder.server.stop()
    mock.clear()
    lines = []
    for provider in PROVIDERS:
        lines += ["[[proxy]]", f'name = "ci-{provider}"', f'provider = "{provider}"',
                  f'upstream_url = "{recorder.proxies[provider].info["upstream_url"]}"']
        lines += [f'{name} = "{value}"' for name, value in PROXY_FIELDS.get(provider, {}).items()]
        lines += [f'cache = {{ mode = "replay_only", fixtures_dir = "fixtures/{provider}" }}', ""]
    config = tmp_path / "rubberduck.toml"
    config.write_text("\n".join(lines))

    server = fresh_rubberduck("--config", str(config))
    status, listed = server.api("GET", "/api/proxies")
    assert status == 200, listed
    declared = {proxy["provider"]: proxy for proxy in listed if proxy["name"].startswith("ci-")}
    assert sorted(declared) == sorted(PROVIDERS), listed
    for provider, proxy in declared.items():
        assert proxy["status"] == "running", proxy
        assert proxy["declared_in"] == str(config), proxy
        assert proxy["cache"]["fixtures_dir"] == str(root / provider), proxy
        wait_listening(proxy["port"])
        replayed = run_calls(provider, proxy["url"].rstrip("/"))
        assert_same_answers(replayed, recorded[provider], provider)
        with pytest.raises(SDK_ERRORS) as raised:
            CALLS[provider]["plain"](client_for(provider, proxy["url"].rstrip("/")), PROMPT + " (changed)")
        assert_not_cached_error(provider, raised.value)
    assert mock.received() == [], "the replayed suite must not reach the upstream"


def replaced(value, old: str, new: str):
    """`value` (parsed JSON) with `old` replaced by `new` in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [replaced(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: replaced(v, old, new) for k, v in value.items()}
    return value


def test_an_edited_fixture_answers_as_edited_after_a_reload(tmp_path, fresh_rubberduck, mock):
    """A reviewer edits a file: the request's prompt (the key is computed from the request, not
    taken from the file) and a plain answer's text; after POST …/cache/reload the SDKs get the
    edited answer to the edited prompt, and the old prompt is no longer recorded."""
    root, recorder, recorded = record(tmp_path, fresh_rubberduck, mock)
    edited_prompt, edited_answer = PROMPT + " (edited)", "An answer edited by hand."
    for path in root.rglob("*.json"):
        fixture = json.loads(path.read_text())
        fixture["request"] = replaced(fixture["request"], PROMPT, edited_prompt)
        fixture["response"] = replaced(fixture["response"], ANSWER, edited_answer)
        path.write_text(json.dumps(fixture, indent=2) + "\n")
    mock.clear()

    replayer = Bench(recorder.server)
    for provider in PROVIDERS:
        proxy = replayer.add(mock, provider, {"mode": "replay_only", "fixtures_dir": str(root / provider)})
        status, loaded = recorder.server.api("POST", f"/api/proxies/{proxy.info['id']}/cache/reload")
        assert status == 200, loaded
        assert loaded["loaded"] == len(CALLS[provider]) and loaded["rejected"] == [], loaded
        answers = run_calls(provider, proxy.url, prompt=edited_prompt)
        for name, answer in answers.items():
            if name == "plain":
                assert answer["text"] == edited_answer, (provider, answer)
            else:  # stream chunks hold the answer in pieces (or in binary frames): left as recorded
                assert answer == recorded[provider][name], (provider, name)
        client = client_for(provider, proxy.url)
        try:
            with pytest.raises(SDK_ERRORS) as caught:
                CALLS[provider]["plain"](client, PROMPT)
            assert_not_cached_error(provider, caught.value)
        finally:
            close(client)
    assert mock.received() == []


# --- 2. a changed prompt in replay_only -------------------------------------------------------

def test_a_changed_prompt_in_replay_only_is_an_error_the_sdk_raises(tmp_path, fresh_rubberduck, mock):
    root, recorder, recorded = record(tmp_path, fresh_rubberduck, mock)
    replayer = Bench(recorder.server)
    for provider in PROVIDERS:
        replayer.add(mock, provider, {"mode": "replay_only", "fixtures_dir": str(root / provider)})
    mock.clear()

    for provider, proxy in replayer.proxies.items():
        # What was recorded replays...
        assert_same_answers(run_calls(provider, proxy.url), recorded[provider], provider)
        # ...a changed prompt is refused, plain or streamed, as the SDK's own error.
        client = client_for(provider, proxy.url)
        try:
            for name, call in CALLS[provider].items():
                started = time.monotonic()
                with pytest.raises(SDK_ERRORS) as caught:
                    call(client, PROMPT + ", please")
                assert time.monotonic() - started < 5, f"{provider} {name}: a miss is answered at once"
                assert_not_cached_error(provider, caught.value)
        finally:
            close(client)

    assert mock.received() == [], "a replay-only proxy never asks the upstream"
    assert len(fixture_files(root)) == total_calls(), "a refused request records nothing"


def assert_not_cached_error(provider: str, error: Exception) -> None:
    """The refusal in the provider's own error shape, as its SDK parsed it."""
    if provider in ("openai", "deepseek", "azure_openai"):
        assert isinstance(error, openai.BadRequestError), repr(error)
        assert error.status_code == 400 and error.code == "not_cached", (error.status_code, error.body)
        assert error.type == "invalid_request_error", error.body
    elif provider == "anthropic":
        assert isinstance(error, anthropic.BadRequestError), repr(error)
        body = error.response.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    elif provider == "bedrock":
        assert isinstance(error, botocore.exceptions.ClientError), repr(error)
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400, error.response
        assert error.response["Error"]["Code"] == "ValidationException", error.response
        assert "cache" in error.response["Error"]["Message"].lower(), error.response
    else:
        assert isinstance(error, genai_errors.ClientError), repr(error)
        assert error.code == 400 and error.status == "FAILED_PRECONDITION", (error.code, error.status, error.message)


def test_per_request_cache_directives(tmp_path, fresh_rubberduck, mock):
    """X-Rubberduck-Cache, sent through each SDK: `replay-only` on a recording proxy refuses a miss
    without the upstream; `bypass` asks the upstream and records nothing; a replay-only proxy
    refuses `refresh` and `bypass`."""
    root, recorder, recorded = record(tmp_path, fresh_rubberduck, mock)
    before = fixture_files(root)
    mock.clear()
    for provider, proxy in recorder.proxies.items():
        replayed = run_calls(provider, proxy.url, headers={"X-Rubberduck-Cache": "replay-only"})
        assert_same_answers(replayed, recorded[provider], provider)
        client = client_for(provider, proxy.url, {"X-Rubberduck-Cache": "replay-only"})
        try:
            for name, call in CALLS[provider].items():
                with pytest.raises(SDK_ERRORS) as caught:
                    call(client, "An unrecorded prompt")
                assert_not_cached_error(provider, caught.value)
        finally:
            close(client)
    assert mock.received() == []

    for provider, proxy in recorder.proxies.items():
        fetched = run_calls(provider, proxy.url, prompt="Asked past the cache", headers={"X-Rubberduck-Cache": "bypass"})
        assert_recorded_answer(fetched)
    assert len(mock.received()) == total_calls(), "bypass asks the upstream"
    no_rubberduck_headers(mock)
    for provider, proxy in recorder.proxies.items():
        status, stats = recorder.server.api("GET", f"/api/proxies/{proxy.info['id']}/cache")
        assert status == 200 and stats["entries"] == len(CALLS[provider]), ("bypass stores nothing", stats)
    time.sleep(0.5)
    assert fixture_files(root) == before, "bypass records nothing"

    mock.clear()
    replayer = Bench(recorder.server)
    for provider in PROVIDERS:
        replayer.add(mock, provider, {"mode": "replay_only", "fixtures_dir": str(root / provider)})
    for provider, proxy in replayer.proxies.items():
        for directive in ("refresh", "bypass"):
            client = client_for(provider, proxy.url, {"X-Rubberduck-Cache": directive})
            try:
                with pytest.raises(SDK_ERRORS) as caught:
                    CALLS[provider]["plain"](client, PROMPT)
            finally:
                close(client)
            assert error_status(caught.value) == 400, (provider, directive, caught.value)
    assert mock.received() == [], "a replay-only proxy never asks the upstream"


def error_status(error: Exception) -> int:
    if isinstance(error, botocore.exceptions.ClientError):
        return error.response["ResponseMetadata"]["HTTPStatusCode"]
    if isinstance(error, genai_errors.APIError):
        return error.code
    return error.status_code


# --- 3. recording unchanged answers again ------------------------------------------------------

def test_recording_unchanged_answers_again_leaves_the_files_byte_identical(tmp_path, fresh_rubberduck, mock):
    root, recorder, recorded = record(tmp_path, fresh_rubberduck, mock)
    before = fixture_files(root)
    assert len(before) == total_calls()
    time.sleep(1.1)  # recorded_at has whole seconds: a rewritten file would differ
    mock.clear()

    # Asked again per request (X-Rubberduck-Cache: refresh), then by proxies in refresh mode.
    for provider, proxy in recorder.proxies.items():
        again = run_calls(provider, proxy.url, headers={"X-Rubberduck-Cache": "refresh"})
        assert_same_answers(again, recorded[provider], provider)
    assert len(mock.received()) == total_calls(), "refresh asks the upstream every time"
    for provider, proxy in recorder.proxies.items():
        status, patched = recorder.server.api("PATCH", f"/api/proxies/{proxy.info['id']}", {"cache": {"mode": "refresh"}})
        assert status == 200 and patched["cache"]["mode"] == "refresh", patched
        wait_listening(patched["port"])
        assert_same_answers(run_calls(provider, patched["url"].rstrip("/")), recorded[provider], provider)
    assert len(mock.received()) == 2 * total_calls()
    no_rubberduck_headers(mock)

    # A changed answer is written (this is also when the writes queued before it are done).
    openai_proxy = recorder.proxies["openai"]
    changed = run_calls("openai", openai_proxy.url, headers={"X-Mock-Answer": "A different answer."})
    assert changed["plain"]["text"] == "A different answer."
    deadline = time.monotonic() + WRITE_WAIT
    while True:
        rewritten = [name for name, data in fixture_files(root).items() if data != before[name]]
        if len(rewritten) == len(CALLS["openai"]):
            break
        assert time.monotonic() < deadline, f"refresh did not rewrite the changed answers: {rewritten}"
        time.sleep(0.05)
    assert all(name.startswith("openai/") for name in rewritten), rewritten
    time.sleep(0.5)

    after = fixture_files(root)
    assert sorted(after) == sorted(before), "the same file set"
    unchanged = {name: data for name, data in after.items() if name not in rewritten}
    assert unchanged == {name: data for name, data in before.items() if name not in rewritten}
    assert len(unchanged) == total_calls() - len(CALLS["openai"])


# --- 4. credential canary ----------------------------------------------------------------------

def assert_no_credentials(where: str, data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    for canary in CANARIES:
        assert canary not in text, f"{where} holds the credential {canary}"
        assert canary.lower() not in text.lower(), f"{where} holds the credential {canary} (in another case)"
    lowered = text.lower()
    for header in CREDENTIAL_HEADERS:
        assert header not in lowered, f"{where} names the credential header {header!r}"


def test_no_credential_is_written_to_fixtures_or_exports(tmp_path, fresh_rubberduck, mock):
    root, recorder, _ = record(tmp_path, fresh_rubberduck, mock)
    # The canaries did reach the upstream (so the proxies had them to leak).
    seen = json.dumps([r.headers for r in mock.received()])
    for canary in (OPENAI_KEY, DEEPSEEK_KEY, AZURE_KEY, ANTHROPIC_KEY, ANTHROPIC_X_API_KEY, VERTEX_TOKEN):
        assert canary in seen, f"{canary} never reached the upstream"

    files = fixture_files(root)
    assert len(files) == total_calls()
    for name, data in files.items():
        assert_no_credentials(f"fixture {name}", data)

    for provider, proxy in recorder.proxies.items():
        base = f"/api/proxies/{proxy.info['id']}/cache/export"
        status, archive = recorder.server.api_bytes("GET", base)
        assert status == 200, archive[:300]
        unpacked = gzip.decompress(archive)
        assert_no_credentials(f"{provider} export (tar)", unpacked)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            assert len(members) == len(CALLS[provider])
            for member in members:
                assert_no_credentials(f"{provider} export {member.name}", tar.extractfile(member).read())
        status, jsonl = recorder.server.api_bytes("GET", base + "?format=jsonl")
        assert status == 200, jsonl[:300]
        assert len(jsonl.splitlines()) == len(CALLS[provider])
        assert_no_credentials(f"{provider} export (jsonl)", jsonl)

    # Nor does the server's own database (cache entries and their recordings, request logs).
    recorder.server.stop()
    stored = [path for path in recorder.server.data_dir.rglob("*") if path.is_file()]
    assert stored, recorder.server.data_dir
    for path in stored:
        data = path.read_bytes()
        for canary in CANARIES:
            assert canary.encode() not in data, f"{path} holds the credential {canary}"


# --- 5. cassettes ------------------------------------------------------------------------------

CASSETTE_ANSWERS = {"test-alpha": "Alpha answers first.", "suite/test-beta": "Beta answers second."}


def test_cassettes_keep_their_own_answers_to_the_same_prompt(tmp_path, fresh_rubberduck, mock):
    root = tmp_path / "fixtures"
    server = fresh_rubberduck()
    recorder = bench(server, mock, lambda p: {"mode": "read_write", "fixtures_dir": str(root / p)})
    recorded = {}
    for cassette, text in CASSETTE_ANSWERS.items():
        for provider, proxy in recorder.proxies.items():
            answers = run_calls(provider, proxy.url, headers={"X-Rubberduck-Cassette": cassette, "X-Mock-Answer": text})
            assert_recorded_answer(answers, text)
            recorded[cassette, provider] = answers
    assert len(mock.received()) == len(CASSETTE_ANSWERS) * total_calls(), "each cassette records its own answer"
    no_rubberduck_headers(mock)

    for provider in PROVIDERS:
        wait_for_files(root / provider, len(CASSETTE_ANSWERS) * len(CALLS[provider]))
        for cassette in CASSETTE_ANSWERS:
            folder = root / provider / cassette
            names = sorted(p.name for p in folder.glob("*.json"))
            assert len(names) == len(CALLS[provider]), (folder, names)
            for path in folder.glob("*.json"):
                fixture = json.loads(path.read_text())
                assert fixture["cassette"] == cassette, fixture
        # The same requests, so the same kinds and models in each cassette's folder (the key, and
        # so the file name's end, is the cassette's own).
        alpha, beta = (sorted(p.name.rsplit("-", 1)[0] for p in (root / provider / c).glob("*.json")) for c in CASSETTE_ANSWERS)
        assert alpha == beta
        assert list((root / provider).glob("*.json")) == [], "no file outside the cassettes"

    # A cassette name cannot lead out of the fixtures directory.
    escaping = "../../outside"
    run_calls("openai", recorder.proxies["openai"].url, headers={"X-Rubberduck-Cassette": escaping})
    wait_for_files(root / "openai", (len(CASSETTE_ANSWERS) + 1) * len(CALLS["openai"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixtures"], list(tmp_path.iterdir())
    assert sorted(p.name for p in root.iterdir()) == sorted(PROVIDERS), list(root.iterdir())

    # Replayed by another proxy on the same directories, which never asks the upstream.
    mock.clear()
    replayer = Bench(server)
    for provider in PROVIDERS:
        replayer.add(mock, provider, {"mode": "replay_only", "fixtures_dir": str(root / provider)})
    for cassette, text in CASSETTE_ANSWERS.items():
        for provider, proxy in replayer.proxies.items():
            replayed = run_calls(provider, proxy.url, headers={"X-Rubberduck-Cassette": cassette})
            assert_same_answers(replayed, recorded[cassette, provider], provider)
            assert_recorded_answer(replayed, text)
    # Without a cassette the same prompt was never recorded.
    for provider, proxy in replayer.proxies.items():
        client = client_for(provider, proxy.url)
        try:
            with pytest.raises(SDK_ERRORS) as caught:
                CALLS[provider]["plain"](client, PROMPT)
            assert_not_cached_error(provider, caught.value)
        finally:
            close(client)
    assert mock.received() == []


# --- 6. export and import -----------------------------------------------------------------------

def test_export_and_import_carry_the_cache_to_a_fresh_server(tmp_path, fresh_rubberduck, mock):
    source = bench(fresh_rubberduck(), mock, lambda p: {"mode": "read_write"})
    recorded = {provider: run_calls(provider, proxy.url) for provider, proxy in source.proxies.items()}
    exports = {}
    for provider, proxy in source.proxies.items():
        assert proxy.info["cache"]["fixtures_dir"] is None, proxy.info["cache"]
        assert_recorded_answer(recorded[provider])
        wait_for_entries(source.server, proxy, len(CALLS[provider]))
        base = f"/api/proxies/{proxy.info['id']}/cache/export"
        status, archive = source.server.api_bytes("GET", base)
        assert status == 200 and archive[:2] == b"\x1f\x8b", archive[:100]
        status, jsonl = source.server.api_bytes("GET", base + "?format=jsonl")
        assert status == 200, jsonl[:300]
        exports[provider] = (archive, jsonl)
    source.server.stop()
    mock.clear()

    target = bench(fresh_rubberduck(), mock, lambda p: {"mode": "replay_only"})
    for provider, proxy in target.proxies.items():
        count = len(CALLS[provider])
        archive, jsonl = exports[provider]
        url = f"/api/proxies/{proxy.info['id']}/cache/import"
        status, report = target.server.api("POST", url, raw=archive)
        assert status == 200, report
        assert report == {"added": count, "replaced": 0, "rejected": []}, (provider, report)
        status, report = target.server.api("POST", url, raw=jsonl)
        assert status == 200, report
        assert report == {"added": 0, "replaced": count, "rejected": []}, (provider, report)
        wait_for_entries(target.server, proxy, count)
        assert_same_answers(run_calls(provider, proxy.url), recorded[provider], provider)
        entries = logs_of(target.server, proxy, count)
        assert [e["cache"] for e in entries] == ["hit"] * count, entries

    # Imported into a proxy that records into a directory, the fixtures become its files: the
    # very bytes of the archive's members, at the same paths.
    for provider in PROVIDERS:
        folder = tmp_path / "imported" / provider
        mirror = Bench(target.server).add(mock, provider, {"mode": "read_write", "fixtures_dir": str(folder)})
        archive, jsonl = exports[provider]
        status, report = target.server.api("POST", f"/api/proxies/{mirror.info['id']}/cache/import", raw=jsonl)
        assert status == 200 and report["added"] == len(CALLS[provider]), report
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert fixture_files(folder) == members, provider
    assert mock.received() == [], "the imported cache answers alone"


# --- measurements ------------------------------------------------------------------------------

def report(tmp_path_factory, line: str) -> None:
    print(f"\n[fixtures measurement] {line}")
    out = tmp_path_factory.getbasetemp() / "fixtures-measurements.txt"
    with out.open("a") as file:
        file.write(line + "\n")


def test_measure_the_fixtures_of_a_100_call_suite(tmp_path, tmp_path_factory, fresh_rubberduck, mock):
    root = tmp_path / "fixtures"
    made = bench(fresh_rubberduck(), mock, lambda p: {"mode": "read_write", "fixtures_dir": str(root / p)})
    clients = {provider: client_for(provider, proxy.url) for provider, proxy in made.proxies.items()}
    plain = stream = 0
    try:
        for n in range(100):
            provider = PROVIDERS[n % len(PROVIDERS)]
            kind = "stream" if (n // len(PROVIDERS)) % 2 else "plain"  # each provider both ways
            answer = CALLS[provider][kind](clients[provider], f"Question {n}: what does a rubber duck say?")
            assert answer["text"] == ANSWER
            plain, stream = (plain + 1, stream) if kind == "plain" else (plain, stream + 1)
    finally:
        for client in clients.values():
            close(client)
    per_provider = {p: sum(1 for n in range(100) if PROVIDERS[n % len(PROVIDERS)] == p) for p in PROVIDERS}
    sizes = {}
    for provider, count in per_provider.items():
        files = wait_for_files(root / provider, count)
        sizes[provider] = sum(len(data) for data in files.values())
    total = sum(sizes.values())
    report(tmp_path_factory, f"100-call suite ({plain} plain, {stream} streamed, six providers): "
           f"{total} bytes of fixtures in 100 files, {total // 100} bytes a file on average; by provider {sizes}")
    assert total > 0


def fixture_variants(template: dict, count: int, offset: int):
    """`count` fixtures made from a recorded one, each with a prompt of its own (the loader computes
    the key from the request, so the key written is only informational)."""
    for n in range(offset, offset + count):
        fixture = copy.deepcopy(template)
        body = fixture["request"]["body"]
        body["messages"][0]["content"] = f"Prompt number {n}"
        fixture["key"] = hashlib.sha256(f"variant {n}".encode()).hexdigest()
        yield n, fixture


def test_measure_loading_10000_fixture_files(tmp_path, tmp_path_factory, fresh_rubberduck, mock):
    server = fresh_rubberduck()
    recorded_dir = tmp_path / "recorded"
    recorder = Bench(server)
    proxy = recorder.add(mock, "openai", {"mode": "read_write", "fixtures_dir": str(recorded_dir)})
    run_calls("openai", proxy.url)
    templates = [json.loads(data) for _, data in sorted(wait_for_files(recorded_dir, 2).items())]
    assert {"body" in t["response"] for t in templates} == {True, False}, "one plain, one streamed"

    big = tmp_path / "ten-thousand"
    big.mkdir()
    for template in templates:
        kind = "stream" if template["request"]["body"].get("stream") else "plain"
        for n, fixture in fixture_variants(template, 5000, 0 if kind == "plain" else 5000):
            (big / f"chat-{kind}-{n:05d}.json").write_text(json.dumps(fixture, indent=2) + "\n")
    on_disk = sum(p.stat().st_size for p in big.iterdir())

    mock.clear()
    started = time.monotonic()
    loader = Bench(server).add(mock, "openai", {"mode": "replay_only", "fixtures_dir": str(big)})
    created_ms = (time.monotonic() - started) * 1000
    status, stats = server.api("GET", f"/api/proxies/{loader.info['id']}/cache")
    assert status == 200, stats
    at_start = stats["fixtures"]
    assert at_start["files"] == 10_000 and at_start["loaded"] == 10_000 and at_start["rejected"] == [], at_start
    assert stats["entries"] == 10_000, stats

    status, reload = server.api("POST", f"/api/proxies/{loader.info['id']}/cache/reload")
    assert status == 200, reload
    assert reload["files"] == 10_000 and reload["loaded"] == 10_000 and reload["rejected"] == [], reload

    # Any one of them answers.
    with openai_style_client("openai", loader.url, {}) as client:
        for n in (0, 4321, 9999):
            if n < 5000:
                answer = openai_plain(client, f"Prompt number {n}")
            else:
                answer = openai_stream(client, f"Prompt number {n}")
            assert answer["text"] == ANSWER
    assert mock.received() == []
    report(tmp_path_factory, f"10,000 fixture files ({on_disk} bytes): loaded at proxy start in {at_start['millis']} ms "
           f"(creating the proxy took {created_ms:.0f} ms), POST …/cache/reload in {reload['millis']} ms")
