"""The snippets every proxy's card shows (and README.md prints), run exactly as
`GET /api/proxies/{id}/snippets` serves them: the Python program with this venv's python, the curl
one with bash, each against a fresh proxy of its provider in front of the recording mock. The
TypeScript programs are run by the JavaScript suite.

Each program gets only the environment variables its SDK reads for its provider, and every proxy
variable points at a closed local port, so a program that reaches anywhere but 127.0.0.1 fails.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import pytest

from conftest import PROXY_AWS_ACCESS_KEY
from mock_upstream import ANSWER, MINTED_TOKEN

REGION = "eu-west-3"
GCLOUD_TOKEN = "ya29.from-gcloud"
BEDROCK_PATH = "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
VERTEX_MODEL_PATH = "/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
AZURE_PATH = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"


@dataclass
class Case:
    env: dict[str, str]
    # The request the mock must receive, path and query as on the wire, per language.
    python_path: str
    curl_path: str
    # The credential each program must have taken from the environment, per language; None where
    # the proxy replaces it (Bedrock re-signs).
    python_key: str | None
    curl_key: str | None
    extra_env: dict[str, str] = field(default_factory=dict)


CASES = {
    "openai": Case(
        env={"OPENAI_API_KEY": "sk-snippet-openai"},
        python_path="/v1/chat/completions", curl_path="/v1/chat/completions",
        python_key="sk-snippet-openai", curl_key="sk-snippet-openai",
    ),
    "anthropic": Case(
        env={"ANTHROPIC_API_KEY": "sk-ant-snippet"},
        python_path="/v1/messages", curl_path="/v1/messages",
        python_key="sk-ant-snippet", curl_key="sk-ant-snippet",
    ),
    "azure_openai": Case(
        env={"AZURE_OPENAI_API_KEY": "azure-snippet-key"},
        python_path=AZURE_PATH, curl_path=AZURE_PATH,
        python_key="azure-snippet-key", curl_key="azure-snippet-key",
    ),
    "bedrock": Case(
        # boto3 reads the region from AWS_DEFAULT_REGION, the JavaScript SDK and the curl
        # program from AWS_REGION; users of either have theirs set.
        env={
            "AWS_ACCESS_KEY_ID": "AKIDSNIPPET", "AWS_SECRET_ACCESS_KEY": "snippet-secret",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        python_path=BEDROCK_PATH.replace(":", "%3A"), curl_path=BEDROCK_PATH,
        python_key=None, curl_key=None,
    ),
    "vertex_ai": Case(
        env={},  # GOOGLE_APPLICATION_CREDENTIALS is added below: the key file is a fixture
        python_path="/v1beta1" + VERTEX_MODEL_PATH, curl_path="/v1" + VERTEX_MODEL_PATH,
        python_key=MINTED_TOKEN, curl_key=GCLOUD_TOKEN,
    ),
    "deepseek": Case(
        env={"DEEPSEEK_API_KEY": "sk-snippet-deepseek"},
        python_path="/v1/chat/completions", curl_path="/v1/chat/completions",
        python_key="sk-snippet-deepseek", curl_key="sk-snippet-deepseek",
    ),
}


@pytest.fixture
def gcloud(tmp_path):
    """A stand-in for the gcloud CLI that knows only the command the Vertex curl program runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "auth print-access-token" ] && {{ echo {GCLOUD_TOKEN}; exit 0; }}\n'
        'echo "gcloud stub: unexpected arguments: $*" >&2\nexit 2\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def program_env(case: Case, home, gcloud, service_account_file) -> dict[str, str]:
    env = {
        "PATH": f"{gcloud}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **case.env,
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = "http://127.0.0.1:9"
    if case is CASES["vertex_ai"]:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(service_account_file)
    return env


def credentials_sent(recorded) -> set[str]:
    values = [recorded.header(name) for name in ("Authorization", "x-api-key", "api-key")]
    return {value.removeprefix("Bearer ") for value in values if value}


def logged(rubberduck, proxy) -> list[dict]:
    """The proxy's log entries once one is written (the writer batches in the background)."""
    deadline = time.monotonic() + 10
    while True:
        status, body = rubberduck.api("GET", f"/api/logs?proxy_id={proxy.info['id']}")
        assert status == 200, body
        if body["total"] >= 1 or time.monotonic() > deadline:
            return body["logs"]
        time.sleep(0.05)


@pytest.mark.parametrize("language", ["python", "curl"])
@pytest.mark.parametrize("provider", list(CASES))
def test_the_snippet_runs_through_the_proxy(
    provider, language, create_proxy, rubberduck, mock, through_proxy, tmp_path, gcloud, service_account_file
):
    case = CASES[provider]
    proxy = create_proxy(provider)
    status, snippets = rubberduck.api("GET", f"/api/proxies/{proxy.info['id']}/snippets")
    assert status == 200, snippets
    assert set(snippets) == {"python", "typescript", "curl"}
    program = snippets[language]
    assert proxy.url in program, program

    if language == "python":
        path = tmp_path / "snippet.py"
        path.write_text(program + "\n")
        command = [sys.executable, str(path)]
    else:
        command = ["bash", "-c", program]
    env = program_env(case, tmp_path, gcloud, service_account_file)
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, f"{language} snippet failed:\n{program}\n--- stderr:\n{result.stderr}"
    if language == "python":
        assert result.stdout == ANSWER + "\n", result.stdout
    else:
        answer = json.loads(result.stdout)
        assert ANSWER in json.dumps(answer), answer

    # The token endpoint is the service-account key's own, called by the client directly.
    received = [r for r in mock.received() if r.path != "/token"]
    assert len(received) == 1, [(r.method, r.raw_path) for r in mock.received()]
    recorded = received[0]
    assert recorded.method == "POST"
    expected_path = case.python_path if language == "python" else case.curl_path
    assert recorded.raw_path == expected_path
    key = case.python_key if language == "python" else case.curl_key
    if key is not None:
        assert key in credentials_sent(recorded), recorded.headers
    if provider == "bedrock":
        # The proxy re-signed it with its own identity, in the region the program signed for.
        scope = re.search(r"Credential=([^/]+)/\d{8}/([^/]+)/bedrock/", recorded.header("Authorization") or "")
        assert scope and scope.groups() == (PROXY_AWS_ACCESS_KEY, REGION), recorded.header("Authorization")
    if provider == "vertex_ai" and language == "python":
        token_calls = [r for r in mock.received() if r.path == "/token"]
        assert token_calls, "Application Default Credentials minted no token from the key file"

    entries = logged(rubberduck, proxy)
    assert len(entries) == 1, entries
    assert entries[0]["status"] == 200
    assert unquote(entries[0]["path"]) == unquote(expected_path.split("?")[0])
