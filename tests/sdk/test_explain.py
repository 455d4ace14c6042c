"""Why a request missed, what a proxy may spend, and whether recorded answers still hold, through
the official SDKs (issue 18):

- a replay-only miss is an error each SDK raises whose text says there is no recorded answer and
  names the JSON path that changed (and no other), as `POST …/cache/explain` and the request log
  do;
- `cache.ignore_fields` leaves fields out of the key: a request differing only in them is a hit;
- a proxy past its daily spend cap refuses misses with the SDK's RateLimitError (and tells the
  SDK not to retry) while recorded answers are still served;
- `rubberduck fixtures verify` replays recorded answers against an upstream that now answers
  otherwise, names the entries that changed and records nothing, unless `--update`.

Each test runs a Rubberduck of its own (`fresh_rubberduck`) against the mock upstream.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

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

from conftest import BOOTSTRAP_TOKEN, Proxy, binary_path, new_proxy, wait_listening
from mock_upstream import ANSWER, EMBEDDING, INPUT_TOKENS, OUTPUT_TOKENS

# Entries, fixture files and log rows are written in the background: how long a test waits.
WRITE_WAIT = 10.0
SYSTEM = "You are a terse assistant."
PROMPT = "Say hello"
CHANGED_PROMPT = "Say hello!"
TEMPERATURE, CHANGED_TEMPERATURE = 0.0, 0.5

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
VERTEX_MODEL = "gemini-2.0-flash"
# USD per million (input, output) tokens, as in src/telemetry/prices.json.
PRICES = {OPENAI_MODEL: (0.15, 0.6), ANTHROPIC_MODEL: (1.0, 5.0)}

# The refusal of a replay-only miss, as src/gateway/error.rs (NotCached) and
# src/cache/explain.rs (Nearest::describe) write it.
NOT_CACHED = re.compile(
    r"Rubberduck: there is no recorded answer in the cache for this request, and the proxy replays only "
    r"\(replay_only\), so it was not sent upstream; the nearest recorded entry \((?P<key>[0-9a-f]{12})…, "
    r"recorded (?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\) differs in (?P<paths>.+)"
)


@pytest.fixture
def server(fresh_rubberduck):
    return fresh_rubberduck()


def api_ok(server, method: str, path: str, body=None, status: int = 200):
    got, answer = server.api(method, path, body)
    assert got == status, f"{method} {path}: {got} {answer}"
    return answer


def patch_proxy(server, proxy: Proxy, fields: dict) -> dict:
    patched = api_ok(server, "PATCH", f"/api/proxies/{proxy.info['id']}", fields)
    assert patched["status"] == "running", patched
    wait_listening(patched["port"])
    return patched


def wait_until(what: str, probe: Callable[[], object]):
    """Until `probe()` answers something true (which is returned); fails after WRITE_WAIT."""
    deadline = time.monotonic() + WRITE_WAIT
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def cache_entries(server, proxy: Proxy) -> int:
    return api_ok(server, "GET", f"/api/proxies/{proxy.info['id']}/cache")["entries"]


def wait_for_entries(server, proxy: Proxy, count: int) -> None:
    wait_until(f"{count} cache entries", lambda: cache_entries(server, proxy) >= count)
    assert cache_entries(server, proxy) == count


def logs(server, proxy: Proxy, filters: str = "") -> dict:
    return api_ok(server, "GET", f"/api/logs?proxy_id={proxy.info['id']}&limit=100{filters}")


# --- 1. a replay-only miss, explained, through each SDK -----------------------------------------

@dataclass
class Sdk:
    """One SDK's chat call with a system text, a prompt and a temperature, and where its error
    keeps what the proxy answered."""

    provider: str
    client: Callable[[str], object]
    # (client, prompt, option) -> the answer's text
    call: Callable[[object, str, float], str]
    error: type
    path: str  # as the SDK sends it to the proxy
    prompt_path: str  # JSON path of the prompt in the request body
    option_path: str  # ... and of a sampling option: the temperature, or Anthropic's max_tokens
    options: tuple  # its recorded value and a changed one
    fields: dict
    # the error -> (the message the proxy wrote, the answer's headers, lower-case names)
    refusal: Callable[[Exception], tuple[str, dict[str, str]]]

    def change(self, body: dict, prompt: str, option) -> dict:
        """The body the SDK sent with its prompt and option replaced."""
        body = copy.deepcopy(body)
        *parents, last = re.findall(r"[^.\[\]]+", self.prompt_path)
        target = body
        for part in parents:
            target = target[int(part) if part.isdigit() else part]
        target[int(last) if last.isdigit() else last] = prompt
        *parents, last = self.option_path.split(".")
        target = body
        for part in parents:
            target = target[part]
        target[last] = option
        return body


def openai_call(client, prompt: str, temperature: float) -> str:
    chat = client.chat.completions.create(
        model=OPENAI_MODEL, temperature=temperature,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
    )
    return chat.choices[0].message.content


def anthropic_call(client, prompt: str, max_tokens: int) -> str:
    # (anthropic 2.x takes no temperature)
    message = client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=max_tokens, system=SYSTEM,
        messages=[{"role": "user", "content": prompt}],
    )
    return message.content[0].text


def bedrock_call(client, prompt: str, temperature: float) -> str:
    answer = client.converse(
        modelId=BEDROCK_MODEL, system=[{"text": SYSTEM}], inferenceConfig={"temperature": temperature},
        messages=[{"role": "user", "content": [{"text": prompt}]}],
    )
    return answer["output"]["message"]["content"][0]["text"]


def vertex_call(client, prompt: str, temperature: float) -> str:
    response = client.models.generate_content(
        model=VERTEX_MODEL, contents=prompt,
        config=types.GenerateContentConfig(system_instruction=SYSTEM, temperature=temperature),
    )
    return response.text


def httpx_refusal(error) -> tuple[str, dict[str, str]]:
    return error.response.json()["error"]["message"], {k.lower(): v for k, v in error.response.headers.items()}


def bedrock_refusal(error) -> tuple[str, dict[str, str]]:
    return error.response["Error"]["Message"], dict(error.response["ResponseMetadata"]["HTTPHeaders"])


def vertex_refusal(error) -> tuple[str, dict[str, str]]:
    return error.message, {k.lower(): v for k, v in error.response.headers.items()}


SDKS = {
    "openai": Sdk(
        "openai", lambda url: openai.OpenAI(api_key="sk-test", base_url=f"{url}/v1", max_retries=0, timeout=30),
        openai_call, openai.BadRequestError, "/v1/chat/completions", "messages[1].content", "temperature",
        (TEMPERATURE, CHANGED_TEMPERATURE), {},
        httpx_refusal,
    ),
    "anthropic": Sdk(
        "anthropic", lambda url: anthropic.Anthropic(api_key="sk-ant-test", base_url=url, max_retries=0, timeout=30),
        anthropic_call, anthropic.BadRequestError, "/v1/messages", "messages[0].content", "max_tokens", (64, 128), {},
        httpx_refusal,
    ),
    "bedrock": Sdk(
        "bedrock",
        lambda url: boto3.client(
            "bedrock-runtime", region_name="us-west-2", endpoint_url=url,
            aws_access_key_id="AKIDCLIENT", aws_secret_access_key="client-secret",
            config=Config(retries={"max_attempts": 1}, read_timeout=30, connect_timeout=10),
        ),
        bedrock_call, botocore.exceptions.ClientError, f"/model/{quote(BEDROCK_MODEL, safe='')}/converse",
        "messages[0].content[0].text", "inferenceConfig.temperature", (TEMPERATURE, CHANGED_TEMPERATURE),
        {"aws_region": "us-west-2"},
        bedrock_refusal,
    ),
    "vertex_ai": Sdk(
        "vertex_ai",
        lambda url: genai.Client(
            vertexai=True, project="sdk-project", location="us-central1", credentials=Credentials(token="ya29.test"),
            http_options=types.HttpOptions(base_url=url, timeout=30_000),
        ),
        vertex_call, genai_errors.ClientError,
        f"/v1beta1/projects/sdk-project/locations/us-central1/publishers/google/models/{VERTEX_MODEL}:generateContent",
        "contents[0].parts[0].text", "generationConfig.temperature", (TEMPERATURE, CHANGED_TEMPERATURE), {},
        vertex_refusal,
    ),
}


def explain(server, proxy: Proxy, path: str, body: dict) -> dict:
    return api_ok(server, "POST", f"/api/proxies/{proxy.info['id']}/cache/explain",
                  {"method": "POST", "path": path, "body": body})


@pytest.mark.parametrize("name", list(SDKS))
def test_a_replay_only_miss_names_the_path_that_changed(name, server, mock):
    sdk = SDKS[name]
    proxy = new_proxy(server, mock, sdk.provider, {"mode": "read_write"}, **sdk.fields)
    client = sdk.client(proxy.url)  # kept referenced: a collected genai Client closes
    recorded_option, changed_option = sdk.options
    assert sdk.call(client, PROMPT, recorded_option) == ANSWER
    sent = mock.only().json()  # the body exactly as the SDK sent it (the proxy forwards it as is)
    wait_for_entries(server, proxy, 1)
    recorded = explain(server, proxy, sdk.path, sent)
    assert recorded["cached"] is True and recorded["nearest"][0]["differs"] == [], recorded
    patched = patch_proxy(server, proxy, {"cache": {"mode": "replay_only"}})
    assert patched["cache"]["mode"] == "replay_only", patched
    assert sdk.call(client, PROMPT, recorded_option) == ANSWER, "what was recorded still replays"

    refusals = []
    for changed, unchanged, prompt, option in (
        (sdk.prompt_path, sdk.option_path, CHANGED_PROMPT, recorded_option),
        (sdk.option_path, sdk.prompt_path, PROMPT, changed_option),
    ):
        with pytest.raises(sdk.error) as raised:
            sdk.call(client, prompt, option)
        message, headers = sdk.refusal(raised.value)
        printed = str(raised.value)
        # What the test would print says what happened and what changed, and nothing else.
        assert message in printed, (message, printed)
        assert "there is no recorded answer" in printed, printed
        found = NOT_CACHED.fullmatch(message)
        assert found, message
        assert found["paths"] == changed, f"{name}: names {found['paths']!r}, changed {changed!r}"
        assert unchanged not in printed and unchanged.rsplit(".", 1)[-1] not in found["paths"], printed
        assert headers.get("x-cache") == "MISS", headers

        # The explain API says the same of the same request, under the key the proxy used.
        explained = explain(server, proxy, sdk.path, sdk.change(sent, prompt, option))
        assert explained["cached"] is False, explained
        assert explained["key"] == headers.get("x-cache-key"), (explained, headers)
        nearest = explained["nearest"][0]
        assert nearest["differs"] == [changed] and nearest["differences"] == 1, explained
        assert nearest["key"] == recorded["key"] and nearest["key"][:12] == found["key"], (explained, message)
        assert nearest["recorded_at"] == found["at"], (explained, message)
        refusals.append(message)

    # The log rows of the misses carry the explanation (without the "Rubberduck: " of the answer).
    rows = wait_until("both refusals logged", lambda: (found := logs(server, proxy, "&status=400"))["total"] >= 2 and found)
    assert rows["total"] == 2, rows
    for row, message in zip(reversed(rows["logs"]), refusals):
        assert row["cache"] == "miss" and row["failure"] == "proxy_error", row
        assert row["path"] == sdk.path, row
        assert "Rubberduck: " + row["error_message"] == message, (row, message)
    assert len(mock.received()) == 1, "a replay-only proxy never asks the upstream"
    getattr(client, "close", lambda: None)()


# --- 2. cache.ignore_fields -----------------------------------------------------------------------

def openai_raw(client, user: str, run_id: str, temperature: float = TEMPERATURE):
    """(the chat answer, its X-Cache) of a call differing in `user`, `metadata` and temperature."""
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, temperature=temperature, user=user, metadata={"run_id": run_id},
        messages=[{"role": "user", "content": PROMPT}],
    )
    return raw.parse(), raw.headers.get("x-cache")


def test_ignored_fields_are_left_out_of_the_key(server, mock):
    ignored = ["user", "metadata"]
    proxy = new_proxy(server, mock, "openai", {"mode": "read_write", "ignore_fields": ignored})
    assert proxy.info["cache"]["ignore_fields"] == ignored, proxy.info["cache"]
    plain = new_proxy(server, mock, "openai", {"mode": "read_write"})
    assert plain.info["cache"]["ignore_fields"] == [], plain.info["cache"]

    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0, timeout=30) as client:
        first, cache = openai_raw(client, "run-1", "1")
        assert cache == "MISS" and first.choices[0].message.content == ANSWER
        wait_for_entries(server, proxy, 1)
        again, cache = openai_raw(client, "run-2", "2")
        assert cache == "HIT", "another user and metadata are ignored"
        assert again.model_dump() == first.model_dump()
        assert len(mock.received()) == 1
        _, cache = openai_raw(client, "run-2", "2", temperature=CHANGED_TEMPERATURE)
        assert cache == "MISS", "the temperature still counts"
        assert len(mock.received()) == 2
    sent = [r.json() for r in mock.received()]
    assert [(s["user"], s["metadata"]) for s in sent] == [("run-1", {"run_id": "1"}), ("run-2", {"run_id": "2"})], \
        "the ignored fields still reach the upstream"

    # Without ignore_fields the same two requests are two entries.
    with openai.OpenAI(api_key="sk-test", base_url=f"{plain.url}/v1", max_retries=0, timeout=30) as client:
        assert openai_raw(client, "run-1", "1")[1] == "MISS"
        wait_for_entries(server, plain, 1)
        assert openai_raw(client, "run-2", "2")[1] == "MISS"
        assert openai_raw(client, "run-1", "1")[1] == "HIT"

    # A replay-only miss names what counts for the key, not the ignored fields.
    patch_proxy(server, proxy, {"cache": {"mode": "replay_only"}})
    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0, timeout=30) as client:
        assert openai_raw(client, "run-9", "9")[1] == "HIT"
        with pytest.raises(openai.BadRequestError) as raised:
            openai_raw(client, "run-9", "9", temperature=0.9)
    message = raised.value.response.json()["error"]["message"]
    found = NOT_CACHED.fullmatch(message)
    assert found and found["paths"] == "temperature", message
    explained = explain(server, proxy, "/v1/chat/completions",
                        {**sent[1], "user": "run-9", "metadata": {"run_id": "9"}, "temperature": 0.9})
    assert explained["nearest"][0]["differs"] == ["temperature"], explained
    explained = explain(server, proxy, "/v1/chat/completions", {**sent[1], "user": "run-9"})
    assert explained["cached"] is True and explained["nearest"][0]["differs"] == [], explained
    assert len(mock.received()) == 4


# --- 3. the daily spend cap -------------------------------------------------------------------------

def usd(value: float) -> str:
    """src/telemetry/prices.rs `usd`: three significant digits below a dollar."""
    if value >= 1.0 or value <= 0.0:
        return f"{value:.2f}"
    return f"{value:.{math.ceil(-math.log10(value)) + 2}f}"


@dataclass
class Capped:
    provider: str
    model: str
    cap: float
    cap_text: str  # as the proxy writes the cap it was given
    client: Callable[[str, int], object]
    # (client, n) -> (the answer's text, X-Cache)
    call: Callable[[object, int], tuple[str, str]]
    rate_limit_error: type

    @property
    def cost(self) -> float:
        input_price, output_price = PRICES[self.model]
        return (INPUT_TOKENS * input_price + OUTPUT_TOKENS * output_price) / 1e6


def capped_openai(client, n: int):
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": f"question {n}"}]
    )
    return raw.parse().choices[0].message.content, raw.headers.get("x-cache")


def capped_anthropic(client, n: int):
    raw = client.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": f"question {n}"}]
    )
    return raw.parse().content[0].text, raw.headers.get("x-cache")


# Caps between one answer's cost and two: the second miss is sent and passes the cap.
CAPPED = {
    "openai": Capped(
        "openai", OPENAI_MODEL, 0.00001, "0.00001",
        lambda url, retries: openai.OpenAI(api_key="sk-test", base_url=f"{url}/v1", max_retries=retries, timeout=30),
        capped_openai, openai.RateLimitError,
    ),
    "anthropic": Capped(
        "anthropic", ANTHROPIC_MODEL, 0.00005, "0.00005",
        lambda url, retries: anthropic.Anthropic(api_key="sk-ant-test", base_url=url, max_retries=retries, timeout=30),
        capped_anthropic, anthropic.RateLimitError,
    ),
}


def spent_today(server, proxy: Proxy) -> dict:
    return api_ok(server, "GET", f"/api/proxies/{proxy.info['id']}")


def wait_for_spend_above(server, proxy: Proxy, floor: float) -> dict:
    """An answer's cost is counted once its last byte is out, maybe just after the SDK read it."""
    return wait_until(f"spend above {floor}", lambda: (p := spent_today(server, proxy))["spent_today_usd"] > floor and p)


@pytest.mark.parametrize("name", list(CAPPED))
def test_past_the_daily_spend_cap_a_miss_is_the_sdks_rate_limit_error_and_hits_still_answer(name, server, mock):
    capped = CAPPED[name]
    assert capped.cost < capped.cap < 2 * capped.cost
    proxy = new_proxy(server, mock, capped.provider, {"mode": "read_write"})
    patched = patch_proxy(server, proxy, {"daily_spend_cap_usd": capped.cap})
    assert patched["daily_spend_cap_usd"] == capped.cap, patched
    assert patched["spent_today_usd"] == 0 and patched["spend_cap_reached"] is False, patched

    client = capped.client(proxy.url, 0)
    assert capped.call(client, 1) == (ANSWER, "MISS")
    first = wait_for_spend_above(server, proxy, 0.0)
    assert first["spent_today_usd"] == pytest.approx(capped.cost), first
    assert first["spend_cap_reached"] is False, first
    wait_for_entries(server, proxy, 1)
    assert capped.call(client, 1) == (ANSWER, "HIT"), "a hit costs nothing"
    assert capped.call(client, 2) == (ANSWER, "MISS"), "still under the cap: sent"
    second = wait_for_spend_above(server, proxy, first["spent_today_usd"])
    spent = second["spent_today_usd"]
    assert spent == pytest.approx(2 * capped.cost) and spent >= capped.cap, second
    assert second["spend_cap_reached"] is True, second
    assert len(mock.received()) == 2

    started = time.monotonic()
    with pytest.raises(capped.rate_limit_error) as raised:
        capped.call(client, 3)
    error = raised.value
    assert error.status_code == 429, error
    message = error.response.json()["error"]["message"]
    assert message == (
        f"Rubberduck: the daily spend cap of ${capped.cap_text} for this proxy is reached "
        f"(${usd(spent)} spent today, UTC); cached answers are still served"
    ), message
    assert message in str(error), str(error)
    assert error.response.headers.get("x-should-retry") == "false", dict(error.response.headers)
    assert error.response.headers.get("x-cache") == "MISS", dict(error.response.headers)
    body = error.response.json()
    if name == "openai":
        assert body["error"]["type"] == "insufficient_quota" and body["error"]["code"] == "insufficient_quota", body
    else:
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error", body

    # An SDK left to retry as it would by default honours x-should-retry: one attempt, at once.
    with capped.client(proxy.url, 3) as retrying:
        with pytest.raises(capped.rate_limit_error):
            capped.call(retrying, 4)
    assert time.monotonic() - started < 2, "no retry waited"
    wait_until("two refusals logged", lambda: logs(server, proxy, "&failure=spend_cap")["total"] >= 2)
    time.sleep(0.3)  # a retry would have been logged by now
    refused = logs(server, proxy, "&failure=spend_cap")
    assert refused["total"] == 2, "one request per refused call, no retries"
    for row in refused["logs"]:
        assert row["status"] == 429 and row["cache"] == "miss" and row["cost_usd"] is None, row
        assert "Rubberduck: " + row["error_message"] == message, row

    # What was recorded before the cap is still served, identically, and nothing went upstream.
    assert capped.call(client, 1) == (ANSWER, "HIT")
    assert capped.call(client, 2) == (ANSWER, "HIT")
    assert len(mock.received()) == 2, "nothing more reached the upstream"
    assert spent_today(server, proxy)["spent_today_usd"] == spent, "refusals and hits cost nothing"
    client.close()


# --- 4. the drift check: rubberduck fixtures verify ---------------------------------------------

@pytest.fixture
def drifting(mock):
    """drifting(text): the mock answers `text` from now on (None: its usual answer); undone at
    the end of the test."""

    def drift(text: str | None) -> None:
        mock.answer = text

    yield drift
    mock.answer = None


def verify(server, proxy: Proxy, *args: str) -> subprocess.CompletedProcess:
    """`rubberduck fixtures verify --proxy NAME` against `server`, with no terminal to ask on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUBBERDUCK_")}
    return subprocess.run(
        [binary_path(), "fixtures", "verify", "--proxy", proxy.info["name"], "--server", server.dashboard,
         "--token", BOOTSTRAP_TOKEN, *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )


def fixture_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def export(server, proxy: Proxy) -> list[dict]:
    status, data = server.api_bytes("GET", f"/api/proxies/{proxy.info['id']}/cache/export?format=jsonl")
    assert status == 200, data[:300]
    return sorted((json.loads(line) for line in data.splitlines() if line.strip()), key=lambda f: f["key"])


def record_three(client) -> dict[str, str]:
    """A plain chat, a streamed chat and an embedding: their texts by kind."""
    plain = client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "drift plain"}])
    chunks = list(client.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "drift stream"}], stream=True,
        stream_options={"include_usage": True},
    ))
    embedding = client.embeddings.create(model="text-embedding-3-small", input="drift")
    return {
        "plain": plain.choices[0].message.content,
        "stream": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "embedding": embedding.data[0].embedding,
    }


def test_fixtures_verify_names_the_drifted_entries_and_only_update_records_them(tmp_path, server, mock, drifting):
    root = tmp_path / "fixtures"
    proxy = new_proxy(server, mock, "openai", {"mode": "read_write", "fixtures_dir": str(root)})
    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0, timeout=30) as client:
        assert record_three(client) == {"plain": ANSWER, "stream": ANSWER, "embedding": EMBEDDING}
    files = wait_until("three fixture files", lambda: len(f := fixture_files(root)) == 3 and f)
    wait_for_entries(server, proxy, 3)
    before = export(server, proxy)
    chats = sorted(name for name, data in files.items() if "messages" in json.loads(data)["request"]["body"])
    (embedding_file,) = set(files) - set(chats)
    mock.clear()

    # Unchanged upstream: nothing to report.
    run = verify(server, proxy, "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"proxy “{proxy.info['name']}”: 3 replayed: 0 changed, 3 unchanged, 0 failed" in run.stdout, run.stdout
    assert len(mock.received()) == 3

    # The upstream now answers otherwise: both chats are reported, by file, and nothing is recorded.
    drifted = "The upstream answers differently now."
    drifting(drifted)
    run = verify(server, proxy, "--yes")
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"proxy “{proxy.info['name']}”: 3 replayed: 2 changed, 1 unchanged, 0 failed" in run.stdout, run.stdout
    changed = sorted(line.split(" ")[1] for line in run.stdout.splitlines() if line.startswith("changed "))
    assert changed == chats, run.stdout
    for name in chats:
        assert f"changed {name} (POST /v1/chat/completions): content" in run.stdout, run.stdout
    assert embedding_file not in run.stdout, run.stdout
    assert drifted.split()[0] in run.stdout and ANSWER.split()[-1] in run.stdout, "a diff of the text: " + run.stdout
    assert "recorded over" not in run.stdout, run.stdout
    assert len(mock.received()) == 6
    time.sleep(0.3)  # anything recorded would be queued by now
    assert fixture_files(root) == files, "verify without --update rewrites no fixture file"
    assert export(server, proxy) == before, "nor any cache entry"
    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0, timeout=30) as client:
        assert record_three(client) == {"plain": ANSWER, "stream": ANSWER, "embedding": EMBEDDING}
    assert len(mock.received()) == 6, "the old answers are still the cached ones"

    # --update records the new answers over the old ones: their files are rewritten, the rest kept.
    run = verify(server, proxy, "--yes", "--update", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert (report["update"], report["changed"], report["unchanged"], report["failed"]) == (True, 2, 1, 0), report
    outcomes = {o["file"]: o for o in report["fixtures"]}
    assert sorted(outcomes) == sorted(files), report
    for name in chats:
        assert outcomes[name]["result"] == "changed" and outcomes[name]["changes"] == ["content"], outcomes[name]
        assert outcomes[name]["recorded"] is True, outcomes[name]
    assert outcomes[embedding_file]["result"] == "unchanged", outcomes[embedding_file]
    rewritten = wait_until(
        "the changed fixtures rewritten",
        lambda: all(f.get(name) != files[name] for name in chats) and f if len(f := fixture_files(root)) == 3 else None,
    )
    assert sorted(rewritten) == sorted(files), "the same files, rewritten in place"
    assert rewritten[embedding_file] == files[embedding_file], "an unchanged answer's file is left as it was"
    for name in chats:
        assert drifted.split()[-1].encode() in rewritten[name], rewritten[name][:400]
    wait_for_entries(server, proxy, 3)
    after = export(server, proxy)
    assert [f["key"] for f in after] == [f["key"] for f in before], "replaced, not added"
    assert after != before

    drifting(None)
    mock.clear()
    with openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0, timeout=30) as client:
        assert record_three(client) == {"plain": drifted, "stream": drifted, "embedding": EMBEDDING}
    assert mock.received() == [], "the new answers are served from the cache"
