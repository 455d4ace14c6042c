"""Failure simulation through the official SDKs: injected failures (PUT /api/proxies/{id}/failure-config)
become each SDK's own typed exceptions, carry what the SDK's retry logic reads, and that logic
retries them. Injected failures never reach the upstream, so attempts are counted at the client
(an httpx event hook, botocore's before-send event), not at the mock."""

from __future__ import annotations

import copy
import time

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from mock_upstream import ANSWER

# Failure simulation lives in the proxy: nothing to check against the bare mock.
pytestmark = pytest.mark.usefixtures("through_proxy")

MESSAGES = [{"role": "user", "content": "Say hello"}]
ANTHROPIC_MODEL = "claude-haiku-4-5"
BEDROCK_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
CONVERSE_MESSAGES = [{"role": "user", "content": [{"text": "Say hello"}]}]
INJECTED = "x-rubberduck-injected"

DEFAULTS = {
    "timeout": {"enabled": False, "rate": 0.0, "mode": "delay", "seconds": 5.0},
    "errors": {"enabled": False, "rates": {}, "retry_after_seconds": 1},
    "ip_filter": {"enabled": False, "allow": [], "block": [], "trusted_proxies": []},
    "rate_limit": {"enabled": False, "requests_per_minute": 60},
    "response_delay": {"enabled": False, "min_ms": 500, "max_ms": 2000, "cache_hits_only": True},
    "seed": None,
}


def set_failures(rubberduck, proxy, **sections) -> dict:
    """PUTs the defaults with these sections' fields laid over them; returns the saved config."""
    body = copy.deepcopy(DEFAULTS)
    for name, value in sections.items():
        if isinstance(value, dict):
            body[name].update(value)
        else:
            body[name] = value
    status, saved = rubberduck.api("PUT", f"/api/proxies/{proxy.info['id']}/failure-config", body)
    assert status == 200, f"PUT failure-config {body}: {status} {saved}"
    return saved


def inject(rubberduck, proxy, status: int, rate: float = 1.0, retry_after: int = 1, seed=None) -> dict:
    return set_failures(
        rubberduck, proxy,
        errors={"enabled": True, "rates": {str(status): rate}, "retry_after_seconds": retry_after},
        seed=seed,
    )


def _proxy_fixture(provider: str, **fields):
    @pytest.fixture(scope="module")
    def proxy(create_proxy, rubberduck):
        if rubberduck is None:
            pytest.skip("only meaningful through a Rubberduck proxy")
        created = create_proxy(provider, **fields)
        yield created
        rubberduck.api("PUT", f"/api/proxies/{created.info['id']}/failure-config", DEFAULTS)

    return proxy


openai_proxy = _proxy_fixture("openai")
deepseek_proxy = _proxy_fixture("deepseek")
azure_proxy = _proxy_fixture("azure_openai")
anthropic_proxy = _proxy_fixture("anthropic")
bedrock_proxy = _proxy_fixture("bedrock", aws_region="us-east-1")
vertex_proxy = _proxy_fixture("vertex_ai")


PROXY_FIXTURES = ("openai_proxy", "deepseek_proxy", "azure_proxy", "anthropic_proxy", "bedrock_proxy", "vertex_proxy")


@pytest.fixture(autouse=True)
def _clean_failure_configs(request, rubberduck):
    """Each test starts and ends with its proxies' failure config at the defaults."""
    used = [request.getfixturevalue(name) for name in request.fixturenames if name in PROXY_FIXTURES]
    for proxy in used:
        set_failures(rubberduck, proxy)
    yield
    for proxy in used:
        set_failures(rubberduck, proxy)


class Attempts:
    """Counts the HTTP requests an httpx(2) client sends and the statuses it gets back."""

    def __init__(self):
        self.statuses: list[int] = []
        self.sent = 0

    def on_request(self, request):
        self.sent += 1

    def on_response(self, response):
        self.statuses.append(response.status_code)

    @property
    def hooks(self) -> dict:
        return {"request": [self.on_request], "response": [self.on_response]}


def openai_client(proxy, max_retries=0, attempts: Attempts | None = None, timeout=30, **kwargs) -> openai.OpenAI:
    http_client = openai.DefaultHttpxClient(event_hooks=attempts.hooks) if attempts else None
    return openai.OpenAI(
        api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=max_retries,
        timeout=timeout, http_client=http_client, **kwargs,
    )


def anthropic_client(proxy, max_retries=0, attempts: Attempts | None = None) -> anthropic.Anthropic:
    http_client = anthropic.DefaultHttpxClient(event_hooks=attempts.hooks) if attempts else None
    return anthropic.Anthropic(
        api_key="sk-ant-test", base_url=proxy.url, max_retries=max_retries, timeout=30, http_client=http_client,
    )


def bedrock_client(proxy, total_attempts=1):
    """`total_max_attempts` counts the first try (botocore's `max_attempts` counts only retries)."""
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=proxy.url,
        aws_access_key_id="AKIDFAULTS", aws_secret_access_key="faults-secret",
        config=Config(retries={"total_max_attempts": total_attempts, "mode": "standard"}, read_timeout=30, connect_timeout=10),
    )


def vertex_client(proxy, **http_options) -> genai.Client:
    return genai.Client(
        vertexai=True, project="sdk-test-project", location="us-central1",
        credentials=Credentials(token="client-token"),
        http_options=types.HttpOptions(base_url=proxy.url, timeout=30_000, **http_options),
    )


def chat(client: openai.OpenAI):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


# --- OpenAI-style SDK errors -------------------------------------------------------------------

def test_openai_rate_limit_error_with_retry_after(openai_proxy, rubberduck, mock):
    inject(rubberduck, openai_proxy, 429, retry_after=2)
    with openai_client(openai_proxy) as client, pytest.raises(openai.RateLimitError) as caught:
        chat(client)

    error = caught.value
    assert error.status_code == 429
    headers = error.response.headers
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers[INJECTED] == "error_injection"
    assert error.body["type"] == "requests", error.body
    assert error.body["code"] == "rate_limit_exceeded", error.body
    assert error.code == "rate_limit_exceeded"
    assert mock.received() == [], "the injected error never reached the upstream"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_openai_internal_server_error(openai_proxy, rubberduck, mock, status):
    inject(rubberduck, openai_proxy, status)
    with openai_client(openai_proxy) as client, pytest.raises(openai.InternalServerError) as caught:
        chat(client)

    assert caught.value.status_code == status
    assert caught.value.response.headers[INJECTED] == "error_injection"
    assert caught.value.message
    assert mock.received() == []


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
    ],
)
def test_openai_client_errors_are_typed(openai_proxy, rubberduck, status, exception):
    inject(rubberduck, openai_proxy, status)
    with openai_client(openai_proxy) as client, pytest.raises(exception) as caught:
        chat(client)
    assert caught.value.status_code == status


def test_deepseek_and_azure_rate_limits_are_rate_limit_errors(deepseek_proxy, azure_proxy, rubberduck, mock):
    inject(rubberduck, deepseek_proxy, 429)
    with openai.OpenAI(api_key="sk-ds", base_url=deepseek_proxy.url, max_retries=0, timeout=30) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "1"

    inject(rubberduck, azure_proxy, 429)
    azure = openai.AzureOpenAI(
        api_key="azure-key", azure_endpoint=azure_proxy.url, api_version="2024-10-21", max_retries=0, timeout=30,
    )
    with azure, pytest.raises(openai.RateLimitError) as caught:
        azure.chat.completions.create(model="gpt4o", messages=MESSAGES)
    assert caught.value.response.headers[INJECTED] == "error_injection"
    assert mock.received() == []


def test_openai_sdk_retries_an_injected_429_max_retries_times(openai_proxy, rubberduck, mock):
    inject(rubberduck, openai_proxy, 429, retry_after=1)
    attempts = Attempts()
    started = time.monotonic()
    with openai_client(openai_proxy, max_retries=2, attempts=attempts) as client:
        with pytest.raises(openai.RateLimitError):
            chat(client)

    assert attempts.sent == 3, "the first try and two retries"
    assert attempts.statuses == [429, 429, 429]
    assert time.monotonic() - started >= 2 * 0.9, "the SDK waited retry-after (1 s) between attempts"
    assert mock.received() == []


def test_openai_sdk_retries_through_a_seeded_flaky_proxy(openai_proxy, rubberduck, mock):
    """Half the requests fail (seeded, so the run is the same every time); every call still
    succeeds thanks to the SDK's retries, and the failures seen are exactly the retries made."""
    inject(rubberduck, openai_proxy, 429, rate=0.5, retry_after=1, seed=20240607)
    attempts = Attempts()
    calls = 8
    with openai_client(openai_proxy, max_retries=10, attempts=attempts) as client:
        answers = [chat(client) for _ in range(calls)]

    assert all(a.choices[0].message.content == ANSWER for a in answers)
    assert attempts.statuses.count(200) == calls
    assert attempts.statuses.count(429) == attempts.sent - calls
    assert attempts.sent > calls, f"some attempts were rate limited and retried: {attempts.statuses}"
    assert len(mock.received()) == calls, "only the successful attempts reached the upstream"

    # The same seed saved again gives the same schedule of failures.
    first = list(attempts.statuses)
    inject(rubberduck, openai_proxy, 429, rate=0.5, retry_after=1, seed=20240607)
    again = Attempts()
    with openai_client(openai_proxy, max_retries=10, attempts=again) as client:
        for _ in range(calls):
            chat(client)
    assert again.statuses == first


def test_openai_gateway_timeout_is_an_internal_server_error(openai_proxy, rubberduck):
    set_failures(rubberduck, openai_proxy, timeout={"enabled": True, "rate": 1.0, "mode": "gateway_timeout", "seconds": 0.3})
    started = time.monotonic()
    with openai_client(openai_proxy) as client, pytest.raises(openai.InternalServerError) as caught:
        chat(client)
    assert caught.value.status_code == 504
    assert caught.value.response.headers[INJECTED] == "timeout"
    assert time.monotonic() - started >= 0.3


def test_openai_hang_is_an_api_timeout_error(openai_proxy, rubberduck):
    set_failures(rubberduck, openai_proxy, timeout={"enabled": True, "rate": 1.0, "mode": "hang", "seconds": 1.0})
    with openai_client(openai_proxy, timeout=1.0) as client, pytest.raises(openai.APITimeoutError):
        chat(client)


def test_openai_ip_block_is_a_permission_denied_error(openai_proxy, rubberduck):
    set_failures(rubberduck, openai_proxy, ip_filter={"enabled": True, "block": ["127.0.0.0/8"]})
    with openai_client(openai_proxy) as client, pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client)
    assert caught.value.status_code == 403
    assert caught.value.response.headers[INJECTED] == "ip_blocked"


# --- Anthropic ---------------------------------------------------------------------------------

def anthropic_message(client: anthropic.Anthropic):
    return client.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MESSAGES)


def test_anthropic_rate_limit_error(anthropic_proxy, rubberduck, mock):
    inject(rubberduck, anthropic_proxy, 429, retry_after=3)
    with anthropic_client(anthropic_proxy) as client, pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_message(client)

    error = caught.value
    assert error.status_code == 429
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert error.response.headers["retry-after"] == "3"
    assert "anthropic-ratelimit-requests-remaining" in error.response.headers
    assert mock.received() == []


def test_anthropic_overloaded_error(anthropic_proxy, rubberduck):
    inject(rubberduck, anthropic_proxy, 529)
    with anthropic_client(anthropic_proxy) as client, pytest.raises(anthropic.OverloadedError) as caught:
        anthropic_message(client)

    assert isinstance(caught.value, anthropic.InternalServerError), "OverloadedError is an InternalServerError"
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_api_error(anthropic_proxy, rubberduck):
    inject(rubberduck, anthropic_proxy, 500)
    with anthropic_client(anthropic_proxy) as client, pytest.raises(anthropic.InternalServerError) as caught:
        anthropic_message(client)
    assert caught.value.status_code == 500
    assert caught.value.body["error"]["type"] == "api_error"


def test_anthropic_sdk_retries_overloaded(anthropic_proxy, rubberduck):
    inject(rubberduck, anthropic_proxy, 529)
    attempts = Attempts()
    with anthropic_client(anthropic_proxy, max_retries=1, attempts=attempts) as client:
        with pytest.raises(anthropic.OverloadedError):
            anthropic_message(client)
    assert attempts.statuses == [529, 529]


def test_anthropic_rate_limit_of_the_proxy(anthropic_proxy, rubberduck, mock):
    set_failures(rubberduck, anthropic_proxy, rate_limit={"enabled": True, "requests_per_minute": 2})
    with anthropic_client(anthropic_proxy) as client:
        for _ in range(2):
            assert anthropic_message(client).content[0].text == ANSWER
        with pytest.raises(anthropic.RateLimitError) as caught:
            anthropic_message(client)
    assert caught.value.response.headers[INJECTED] == "rate_limited"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert len(mock.received()) == 2


# --- Bedrock (boto3) ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "ThrottlingException"), (500, "InternalServerException"), (503, "ServiceUnavailableException")],
)
def test_bedrock_client_error_codes(bedrock_proxy, rubberduck, mock, status, code):
    inject(rubberduck, bedrock_proxy, status)
    client = bedrock_client(bedrock_proxy)
    try:
        with pytest.raises(ClientError) as caught:
            client.converse(modelId=BEDROCK_MODEL_ID, messages=CONVERSE_MESSAGES)
    finally:
        client.close()

    error = caught.value.response
    assert error["Error"]["Code"] == code, error
    assert error["Error"]["Message"], error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["ResponseMetadata"]["HTTPHeaders"][INJECTED] == "error_injection"
    assert mock.received() == []


def test_boto3_retries_throttling(bedrock_proxy, rubberduck):
    inject(rubberduck, bedrock_proxy, 429)
    client = bedrock_client(bedrock_proxy, total_attempts=3)
    sent = []
    client.meta.events.register("before-send.bedrock-runtime.*", lambda request, **_: sent.append(request.url))
    try:
        with pytest.raises(ClientError) as caught:
            client.converse(modelId=BEDROCK_MODEL_ID, messages=CONVERSE_MESSAGES)
    finally:
        client.close()
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(sent) == 3, f"boto3 standard retries: {sent}"
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 2


# --- Google (google-genai) ---------------------------------------------------------------------

def test_genai_client_error_429(vertex_proxy, rubberduck, mock):
    inject(rubberduck, vertex_proxy, 429)
    client = vertex_client(vertex_proxy)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert mock.received() == []


@pytest.mark.parametrize(("status", "name"), [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_genai_server_errors(vertex_proxy, rubberduck, status, name):
    inject(rubberduck, vertex_proxy, status)
    client = vertex_client(vertex_proxy)
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
    assert caught.value.code == status
    assert caught.value.status == name


def test_genai_retry_options_retry_injected_errors(vertex_proxy, rubberduck):
    inject(rubberduck, vertex_proxy, 503)
    attempts = Attempts()
    http_client = httpx.Client(event_hooks=attempts.hooks, timeout=30)
    client = vertex_client(
        vertex_proxy,
        httpx_client=http_client,
        retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.1, max_delay=0.2, jitter=0.1),
    )
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
    http_client.close()
    assert attempts.statuses == [503, 503, 503]


# --- Every injectable status, as each provider documents it -------------------------------------
# The tables of src/providers/*.rs (each provider's `injected_error`), written out again here so a
# change there that the SDKs would notice fails here. Each SDK must raise the exception it raises
# for the real provider's answer, not just "an error".

INJECTABLE = [400, 401, 403, 404, 408, 429, 500, 502, 503, 504, 529]
RETRY_AFTER = 3

OPENAI_EXCEPTIONS = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    408: openai.APIStatusError,  # no class of its own; the SDK retries it
    429: openai.RateLimitError,
    **{status: openai.InternalServerError for status in (500, 502, 503, 504, 529)},
}

# (error.type, error.code) per status; unlisted statuses are OpenAI's server_error.
OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("request_forbidden", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("server_error", "timeout"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("service_unavailable_error", "server_is_overloaded"),
}

DEEPSEEK_ERRORS = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "invalid_request_error"),
    403: ("invalid_request_error", "invalid_request_error"),
    404: ("invalid_request_error", "invalid_request_error"),
    408: ("invalid_request_error", "invalid_request_error"),
    429: ("requests", "rate_limit_exceeded"),
}

# Azure's own front end: status -> error.code, with no error.type.
AZURE_FRONT_DOOR = {401: "401", 404: "DeploymentNotFound", 429: "429"}

ANTHROPIC_ERRORS = {
    400: (anthropic.BadRequestError, "invalid_request_error"),
    401: (anthropic.AuthenticationError, "authentication_error"),
    403: (anthropic.PermissionDeniedError, "permission_error"),
    404: (anthropic.NotFoundError, "not_found_error"),
    408: (anthropic.RequestTimeoutError, "invalid_request_error"),
    429: (anthropic.RateLimitError, "rate_limit_error"),
    500: (anthropic.InternalServerError, "api_error"),
    502: (anthropic.InternalServerError, "api_error"),
    503: (anthropic.ServiceUnavailableError, "api_error"),
    504: (anthropic.GatewayTimeoutError, "timeout_error"),
    529: (anthropic.OverloadedError, "overloaded_error"),
}

BEDROCK_CODES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    429: "ThrottlingException",
    500: "InternalServerException",
    502: "InternalServerException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
    529: "ServiceUnavailableException",
}

GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}


def retry_hints(headers, status: int) -> None:
    if status in (429, 503, 529):
        assert headers["retry-after"] == str(RETRY_AFTER), dict(headers)
    else:
        assert "retry-after" not in headers, dict(headers)


@pytest.mark.parametrize("status", INJECTABLE)
def test_openai_sdk_raises_openais_exception_for_every_status(openai_proxy, rubberduck, mock, status):
    inject(rubberduck, openai_proxy, status, retry_after=RETRY_AFTER)
    with openai_client(openai_proxy) as client, pytest.raises(openai.APIStatusError) as caught:
        chat(client)

    error = caught.value
    assert type(error) is OPENAI_EXCEPTIONS[status], type(error)
    assert error.status_code == status
    assert (error.type, error.code) == OPENAI_ERRORS.get(status, ("server_error", None)), error.body
    assert error.request_id and error.request_id.startswith("req_"), error.request_id
    retry_hints(error.response.headers, status)
    assert mock.received() == []


@pytest.mark.parametrize("status", INJECTABLE)
def test_deepseek_errors_are_deepseeks(deepseek_proxy, rubberduck, status):
    inject(rubberduck, deepseek_proxy, status, retry_after=RETRY_AFTER)
    client = openai.OpenAI(api_key="sk-ds", base_url=deepseek_proxy.url, max_retries=0, timeout=30)
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)

    error = caught.value
    assert type(error) is OPENAI_EXCEPTIONS[status], type(error)
    assert (error.type, error.code) == DEEPSEEK_ERRORS.get(status, ("server_error", None)), error.body
    retry_hints(error.response.headers, status)


@pytest.mark.parametrize("status", INJECTABLE)
def test_azure_errors_are_azures(azure_proxy, rubberduck, status):
    inject(rubberduck, azure_proxy, status, retry_after=RETRY_AFTER)
    client = openai.AzureOpenAI(
        api_key="azure-key", azure_endpoint=azure_proxy.url, api_version="2024-10-21", max_retries=0, timeout=30,
    )
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt4o", messages=MESSAGES)

    error = caught.value
    assert type(error) is OPENAI_EXCEPTIONS[status], type(error)
    if status in AZURE_FRONT_DOOR:
        assert error.code == AZURE_FRONT_DOOR[status], error.body
        assert error.type is None, error.body
    else:
        assert (error.type, error.code) == OPENAI_ERRORS.get(status, ("server_error", None)), error.body
    headers = error.response.headers
    retry_hints(headers, status)
    if status in (429, 503, 529):
        assert headers["retry-after-ms"] == str(RETRY_AFTER * 1000), dict(headers)
    assert len(error.request_id or "") == 36, f"a UUID: {error.request_id!r}"
    assert headers["apim-request-id"] == error.request_id


@pytest.mark.parametrize("status", INJECTABLE)
def test_anthropic_sdk_raises_anthropics_exception_for_every_status(anthropic_proxy, rubberduck, mock, status):
    expected, error_type = ANTHROPIC_ERRORS[status]
    inject(rubberduck, anthropic_proxy, status, retry_after=RETRY_AFTER)
    with anthropic_client(anthropic_proxy) as client, pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_message(client)

    error = caught.value
    assert type(error) is expected, type(error)
    assert error.status_code == status
    assert error.type == error_type, error.body
    assert error.body["type"] == "error", error.body
    assert error.request_id and error.request_id.startswith("req_"), error.request_id
    assert error.body["request_id"] == error.request_id, error.body
    retry_hints(error.response.headers, status)
    assert mock.received() == []


@pytest.mark.parametrize("status", INJECTABLE)
def test_boto3_raises_bedrocks_exception_for_every_status(bedrock_proxy, rubberduck, mock, status):
    code = BEDROCK_CODES[status]
    inject(rubberduck, bedrock_proxy, status, retry_after=RETRY_AFTER)
    client = bedrock_client(bedrock_proxy)
    # boto3 raises the modelled class when the code names one; UnrecognizedClientException is not
    # modelled by bedrock-runtime, and botocore raises a plain ClientError for it, as with AWS.
    modelled = getattr(client.exceptions, code, None)
    try:
        with pytest.raises(ClientError) as caught:
            client.converse(modelId=BEDROCK_MODEL_ID, messages=CONVERSE_MESSAGES)
    finally:
        client.close()

    error = caught.value
    assert type(error) is (modelled or ClientError), type(error)
    assert error.response["Error"]["Code"] == code, error.response
    assert error.response["Error"]["Message"], error.response
    metadata = error.response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == status
    assert len(metadata.get("RequestId", "")) == 36, metadata
    retry_hints(metadata["HTTPHeaders"], status)
    assert mock.received() == []


def test_boto3_invoke_model_404_is_resource_not_found(bedrock_proxy, rubberduck):
    """The case of the report: an injected 404 on InvokeModel raised ValidationException."""
    inject(rubberduck, bedrock_proxy, 404)
    client = bedrock_client(bedrock_proxy)
    try:
        with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
            client.invoke_model(
                modelId=BEDROCK_MODEL_ID,
                body=b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}',
            )
    finally:
        client.close()
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert not isinstance(caught.value, client.exceptions.ValidationException)


@pytest.mark.parametrize("status", INJECTABLE)
def test_genai_raises_googles_error_for_every_status(vertex_proxy, rubberduck, mock, status):
    inject(rubberduck, vertex_proxy, status, retry_after=RETRY_AFTER)
    client = vertex_client(vertex_proxy)
    expected = errors.ClientError if status < 500 else errors.ServerError
    with pytest.raises(errors.APIError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")

    error = caught.value
    assert type(error) is expected, type(error)
    assert error.code == status
    assert error.status == GOOGLE_STATUSES[status], error.details
    if status == 429:
        assert error.details["error"]["details"] == [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER}s"}
        ], error.details
    assert mock.received() == []
