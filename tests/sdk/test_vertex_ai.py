"""Vertex AI through `google-genai` (Vertex mode and Gemini API mode) and `anthropic.AnthropicVertex`,
through a Vertex AI proxy: Bearer passthrough, and tokens the proxy mints from a service-account key
when the client sends none."""

import base64
import json
import time
from urllib.parse import parse_qs

import anthropic
import httpx
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from mock_upstream import ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, MINTED_TOKEN, OUTPUT_TOKENS, RATE_LIMITED_MODEL

PROJECT = "sdk-project"
LOCATION = "us-central1"
MODEL = "gemini-2.0-flash"
VERTEX_PATH = f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}"
CLIENT_TOKEN = "client-token"


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("vertex_ai")


@pytest.fixture(scope="module")
def minting_proxy(create_proxy, service_account_file):
    return create_proxy("vertex_ai", vertex_service_account_file=str(service_account_file))


def vertex_client(url: str, **http_options) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project=PROJECT,
        location=LOCATION,
        credentials=Credentials(token=CLIENT_TOKEN),
        http_options=types.HttpOptions(base_url=url, timeout=30_000, **http_options),
    )


def assert_generate_content_response(response):
    assert response.text == ANSWER
    assert response.usage_metadata.prompt_token_count == INPUT_TOKENS
    assert response.usage_metadata.candidates_token_count == OUTPUT_TOKENS
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


def test_generate_content_with_bearer_passthrough(proxy, mock):
    client = vertex_client(proxy.url)
    response = client.models.generate_content(model=MODEL, contents="Say hello")

    assert_generate_content_response(response)
    recorded = mock.only()
    assert recorded.method == "POST"
    assert recorded.raw_path == f"{VERTEX_PATH}:generateContent"
    assert recorded.header("Authorization") == f"Bearer {CLIENT_TOKEN}"
    assert recorded.header("Host") == f"127.0.0.1:{mock.port}"
    assert "google-genai-sdk" in (recorded.header("x-goog-api-client") or "")
    assert recorded.json() == {"contents": [{"parts": [{"text": "Say hello"}], "role": "user"}]}


def test_stream_generate_content(proxy, mock):
    client = vertex_client(proxy.url)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))

    assert [c.text for c in chunks] == ANSWER_CHUNKS
    assert chunks[-1].usage_metadata.candidates_token_count == OUTPUT_TOKENS
    recorded = mock.only()
    assert recorded.raw_path == f"{VERTEX_PATH}:streamGenerateContent?alt=sse"
    assert recorded.header("Authorization") == f"Bearer {CLIENT_TOKEN}"


def test_upstream_429_surfaces_as_client_error(proxy, mock):
    client = vertex_client(proxy.url)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=RATE_LIMITED_MODEL, contents="Say hello")

    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"


def test_gemini_api_mode_with_api_key(proxy, mock):
    client = genai.Client(api_key="gemini-test-key", http_options=types.HttpOptions(base_url=proxy.url, timeout=30_000))
    response = client.models.generate_content(model=MODEL, contents="Say hello")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))

    assert_generate_content_response(response)
    assert "".join(c.text for c in chunks) == ANSWER
    plain, streamed = mock.received()
    version = client._api_client._http_options.api_version  # google-genai 3.x: v1 (older: v1beta)
    assert version in ("v1", "v1beta")
    assert plain.raw_path == f"/{version}/models/{MODEL}:generateContent"
    assert streamed.raw_path == f"/{version}/models/{MODEL}:streamGenerateContent?alt=sse"
    for recorded in (plain, streamed):
        assert recorded.header("x-goog-api-key") == "gemini-test-key"
        assert recorded.header("Authorization") is None


def _drop_authorization(request: httpx.Request) -> None:
    request.headers.pop("Authorization", None)


def test_token_minted_from_the_service_account_key(minting_proxy, mock, service_account_file, through_proxy):
    """google-genai in Vertex mode always sends `Authorization: Bearer <token>` (it refuses to run
    without a token: AnonymousCredentials has none and cannot refresh). A client without Google
    credentials is modelled with the SDK's own requests minus that header, removed by an httpx
    request hook; the proxy must mint a token from the service-account key instead."""
    http_client = httpx.Client(event_hooks={"request": [_drop_authorization]}, timeout=30)
    client = vertex_client(minting_proxy.url, httpx_client=http_client)
    response = client.models.generate_content(model=MODEL, contents="Say hello")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))

    assert_generate_content_response(response)
    assert "".join(c.text for c in chunks) == ANSWER
    generate = mock.only(":generateContent")
    stream = mock.only(":streamGenerateContent")
    assert generate.header("Authorization") == f"Bearer {MINTED_TOKEN}"
    assert stream.header("Authorization") == f"Bearer {MINTED_TOKEN}"
    assert len(mock.received("/token")) == 1, "the minted token is reused until it expires"

    # The token request is a JWT-bearer grant signed with the service account's key.
    token_request = mock.only("/token")
    assert token_request.method == "POST"
    form = parse_qs(token_request.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    header_b64, claims_b64, signature_b64 = form["assertion"][0].split(".")
    account = json.loads(service_account_file.read_text())
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
    assert claims["iss"] == account["client_email"]
    assert claims["aud"] == account["token_uri"]
    assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"].split()
    assert abs(claims["iat"] - time.time()) < 300
    _verify_rs256(account["private_key"], f"{header_b64}.{claims_b64}", signature_b64)


def test_client_bearer_wins_over_the_service_account(minting_proxy, mock, through_proxy):
    client = vertex_client(minting_proxy.url)
    client.models.generate_content(model=MODEL, contents="Say hello")

    assert mock.only(":generateContent").header("Authorization") == f"Bearer {CLIENT_TOKEN}"


def test_anthropic_vertex_raw_predict(proxy, mock):
    client = anthropic.AnthropicVertex(
        region="us-east5", project_id=PROJECT, access_token=CLIENT_TOKEN, base_url=f"{proxy.url}/v1",
        max_retries=0, timeout=30,
    )
    messages = [{"role": "user", "content": "Say hello"}]
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=messages)
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=messages) as stream:
        deltas = [e.delta.text for e in stream if e.type == "content_block_delta"]
    client.close()

    assert message.content[0].text == ANSWER
    assert message.usage.input_tokens == INPUT_TOKENS
    assert deltas == ANSWER_CHUNKS
    plain, streamed = mock.received()
    base = f"/v1/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5"
    assert plain.raw_path == f"{base}:rawPredict"
    assert streamed.raw_path == f"{base}:streamRawPredict"
    for recorded in (plain, streamed):
        assert recorded.header("Authorization") == f"Bearer {CLIENT_TOKEN}"
        assert "anthropic_version" in recorded.json()


def _verify_rs256(private_key_pem: str, signed: str, signature_b64: str) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    key.public_key().verify(signature, signed.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_unreachable_upstream_is_a_google_shaped_error(create_proxy, through_proxy):
    dead = create_proxy("vertex_ai", upstream_url="http://127.0.0.1:9")
    client = vertex_client(dead.url)
    with pytest.raises(errors.APIError) as caught:
        client.models.generate_content(model=MODEL, contents="Say hello")

    assert caught.value.code in (502, 503, 504)
    assert caught.value.status, "Google errors carry a status such as UNAVAILABLE"
    assert caught.value.message
