"""Fixtures of the SDK conformance suite: the mock upstream, the real `rubberduck` binary, proxies.

Run from the repository root:  python -m pytest tests/sdk -q
Environment:
  RUBBERDUCK_BIN   the binary to start (default target/debug/rubberduck)
  SDK_PROXY_PORTS  FIRST-LAST proxy ports for this run (default: a free block of 200 in 20000-29999)
  SDK_DIRECT=1     (or --direct) point the SDKs straight at the mock, bypassing Rubberduck; tells
                   a proxy bug from a mock bug. Tests that only make sense through a proxy skip.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mock_upstream import MockUpstream  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# Credentials of the rubberduck process itself (Bedrock re-signing falls back to them).
PROXY_AWS_ACCESS_KEY = "AKIDTEST"
PROXY_AWS_SECRET_KEY = "test-secret"
BOOTSTRAP_TOKEN = "sdk-suite-bootstrap-token"

# Local calls must never go through a proxy from the environment.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)


def pytest_addoption(parser):
    parser.addoption("--direct", action="store_true", help="talk to the mock upstream directly, without Rubberduck")


@pytest.fixture(scope="session")
def direct(pytestconfig) -> bool:
    return bool(pytestconfig.getoption("--direct") or os.environ.get("SDK_DIRECT") == "1")


@pytest.fixture
def through_proxy(direct):
    """For tests that only make sense through a proxy (re-signing, token minting, path mapping)."""
    if direct:
        pytest.skip("only meaningful through a Rubberduck proxy")


@pytest.fixture(scope="session")
def mock():
    upstream = MockUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(autouse=True)
def _fresh_recording(mock):
    mock.clear()
    yield


# --- the rubberduck process ------------------------------------------------------------------

def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_range() -> tuple[int, int]:
    configured = os.environ.get("SDK_PROXY_PORTS")
    if configured:
        first, last = configured.split("-")
        return int(first), int(last)
    # The suite creates well over a hundred proxies; blocks of 200 in 20000-29999.
    size = 200
    start = (os.getpid() % 50) * size
    for attempt in range(50):
        first = 20000 + (start + attempt * size) % 10000
        if all(_bindable(p) for p in range(first, first + size)):
            return first, first + size - 1
    raise RuntimeError(f"no free block of {size} proxy ports in 20000-29999")


@dataclass
class Rubberduck:
    process: subprocess.Popen
    dashboard: str
    log: list[str]
    data_dir: Path | None = None

    def api(self, method: str, path: str, body=None, raw: bytes | None = None):
        """One admin API call: (status, parsed JSON). `raw` is sent as the body instead of JSON
        (e.g. an archive to import)."""
        status, data = self.api_bytes(method, path, body, raw)
        try:
            return status, json.loads(data or b"null")
        except ValueError:
            return status, data.decode(errors="replace")

    def api_bytes(self, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, bytes]:
        """One admin API call: (status, the answer's bytes unparsed)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.dashboard + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {BOOTSTRAP_TOKEN}")
        if data is not None:
            request.add_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self) -> None:
        """SIGTERM, then waits for the process to end (graceful: pending writes are flushed)."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("rubberduck did not stop within 30 s of SIGTERM")


def binary_path() -> str:
    binary = os.environ.get("RUBBERDUCK_BIN") or str(REPO / "target" / "debug" / "rubberduck")
    assert Path(binary).is_file(), f"no rubberduck binary at {binary} (cargo build, or set RUBBERDUCK_BIN)"
    return binary


def start_rubberduck(data_dir: Path, ports: tuple[int, int], extra_args: tuple[str, ...] = ()) -> Rubberduck:
    """Starts the real binary on `data_dir` with proxies in `ports` (and `extra_args` for
    `serve`); returns once its dashboard listens. Stop it with `.stop()`."""
    first, last = ports
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RUBBERDUCK_", "GOOGLE_"))}
    env.update({
        "RUST_LOG": "info",
        "AWS_ACCESS_KEY_ID": PROXY_AWS_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": PROXY_AWS_SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "RUBBERDUCK_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "RUBBERDUCK_ADMIN_PASSWORD": "sdk-suite-password",
    })
    process = subprocess.Popen(
        [binary_path(), "serve", "--bind", "127.0.0.1:0", "--data-dir", str(data_dir), "--proxy-ports", f"{first}-{last}",
         *extra_args],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    log: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def read() -> None:
        for line in process.stderr:
            log.append(line.rstrip("\n"))
            if not found and "dashboard on " in line:
                found.append(line.split("dashboard on ", 1)[1].split()[0])
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or not found:
        process.kill()
        raise RuntimeError("rubberduck did not print its dashboard address:\n" + "\n".join(log[-40:]))
    return Rubberduck(process, found[0].rstrip("/"), log, data_dir)


@pytest.fixture(scope="session")
def proxy_ports() -> tuple[int, int]:
    """The block of ports every server of this run gives its proxies (a proxy takes a port free
    in the OS, so servers running side by side do not collide)."""
    return _port_range()


@pytest.fixture(scope="session")
def rubberduck(direct, tmp_path_factory, proxy_ports):
    if direct:
        yield None
        return
    server = start_rubberduck(tmp_path_factory.mktemp("rubberduck-data"), proxy_ports)
    yield server
    server.stop()


@pytest.fixture
def fresh_rubberduck(direct, tmp_path_factory, proxy_ports, request):
    """fresh_rubberduck(*serve_args) -> a Rubberduck of its own on a fresh data dir; every one
    started is stopped when the test ends (or earlier with `.stop()`)."""
    if direct:
        pytest.skip("only meaningful through a Rubberduck proxy")
    started: list[Rubberduck] = []
    request.node.fresh_servers = started  # their logs go into the report of a failure

    def start(*serve_args: str) -> Rubberduck:
        server = start_rubberduck(tmp_path_factory.mktemp("rubberduck-fresh"), proxy_ports, serve_args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = item.funcargs.get("rubberduck") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(server, Rubberduck):
        report.sections.append(("rubberduck log (last 30 lines)", "\n".join(server.log[-30:])))
    for number, fresh in enumerate(getattr(item, "fresh_servers", []), 1):
        if report.failed:
            report.sections.append((f"fresh rubberduck #{number} log (last 30 lines)", "\n".join(fresh.log[-30:])))


# --- proxies ---------------------------------------------------------------------------------

@dataclass
class Proxy:
    """Where the SDK points: a Rubberduck proxy, or in direct mode the mock itself."""

    url: str
    info: dict


_names = itertools.count(1)


def new_proxy(server: Rubberduck | None, mock: MockUpstream, provider: str, cache: bool | dict = False, **fields) -> Proxy:
    """A running proxy of `server` (in direct mode, the mock itself); see `create_proxy`."""
    if "upstream_url" not in fields:
        fields["upstream_url"] = mock.url + ("/v1" if provider in ("openai", "deepseek") else "")
    if server is None:
        return Proxy(url=mock.url, info={"provider": provider, **fields})
    body = {"name": f"sdk-{provider}-{next(_names)}", "provider": provider, **fields}
    if isinstance(cache, dict):
        body["cache"] = cache
    status, proxy = server.api("POST", "/api/proxies", body)
    assert status == 201, f"creating a {provider} proxy: {status} {proxy}"
    assert proxy["status"] == "running", proxy
    if cache is False:
        # The test checks what reached the upstream, so no answer may come from the cache.
        status, proxy = server.api("PATCH", f"/api/proxies/{proxy['id']}", {"cache": {"enabled": False}})
        assert status == 200, f"disabling the cache of {body['name']}: {status} {proxy}"
        assert proxy["cache"]["enabled"] is False, proxy
        assert proxy["status"] == "running", proxy
    else:
        assert proxy["cache"]["enabled"] is True, proxy
    url = proxy["url"].rstrip("/")
    wait_listening(proxy["port"])
    return Proxy(url=url, info=proxy)


def wait_listening(port: int) -> None:
    """Until 127.0.0.1:`port` accepts connections (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def create_proxy(rubberduck, mock):
    """create_proxy(provider, cache=False, **fields) -> Proxy. `cache=False` turns the proxy's cache
    off (the default: most tests check what reached the upstream); `cache=True` keeps the default
    cache settings; a dict is sent as the `cache` settings at creation. `upstream_url` defaults to
    the mock (with /v1 for the OpenAI-style providers, whose upstream bases carry the version)."""

    def create(provider: str, cache: bool | dict = False, **fields) -> Proxy:
        return new_proxy(rubberduck, mock, provider, cache, **fields)

    return create


@pytest.fixture(scope="session")
def service_account_file(mock, tmp_path_factory) -> Path:
    """A Google service-account key (fresh RSA key) whose token_uri is the mock's /token."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "sdk-test-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "rubberduck-sdk@sdk-test-project.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": f"{mock.url}/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/rubberduck-sdk",
    }
    path = tmp_path_factory.mktemp("vertex") / "service-account.json"
    path.write_text(json.dumps(account))
    return path
