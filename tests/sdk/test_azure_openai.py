"""The `openai` SDK's `AzureOpenAI` client (and the Azure v1 API through plain `OpenAI`) through an
Azure OpenAI proxy."""

import openai
import pytest

from mock_upstream import ANSWER, ANSWER_CHUNKS, EMBEDDING, INPUT_TOKENS, OUTPUT_TOKENS

API_KEY = "azure-test-key"
API_VERSION = "2024-10-21"
DEPLOYMENT = "gpt-4o-mini-deploy"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("azure_openai")


@pytest.fixture
def client(proxy):
    with openai.AzureOpenAI(
        azure_endpoint=proxy.url, api_key=API_KEY, api_version=API_VERSION, azure_deployment=DEPLOYMENT,
        max_retries=0, timeout=30,
    ) as client:
        yield client


def assert_sent_by_sdk(mock, recorded, path):
    assert recorded.method == "POST"
    assert recorded.path == path
    assert recorded.params == {"api-version": [API_VERSION]}
    assert recorded.header("api-key") == API_KEY
    assert recorded.header("Authorization") is None
    assert recorded.header("Host") == f"127.0.0.1:{mock.port}"


def test_azure_proxy_requires_an_upstream_url(rubberduck, through_proxy):
    status, body = rubberduck.api("POST", "/api/proxies", {"name": "sdk-azure-no-upstream", "provider": "azure_openai"})

    assert status == 422, body
    assert body["error"]["field"] == "upstream_url"


def test_chat_completion(client, mock):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content == ANSWER
    assert completion.usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS
    recorded = mock.only()
    assert_sent_by_sdk(mock, recorded, f"/openai/deployments/{DEPLOYMENT}/chat/completions")
    assert recorded.raw_path == f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
    assert recorded.body == raw.http_request.content
    assert recorded.json() == {"model": "gpt-4o-mini", "messages": MESSAGES}


def test_chat_completion_stream(client, mock):
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ANSWER_CHUNKS
    assert chunks[-1].usage.completion_tokens == OUTPUT_TOKENS
    assert_sent_by_sdk(mock, mock.only(), f"/openai/deployments/{DEPLOYMENT}/chat/completions")


def test_embeddings(proxy, mock):
    with openai.AzureOpenAI(
        azure_endpoint=proxy.url, api_key=API_KEY, api_version=API_VERSION, max_retries=0
    ) as client:
        result = client.embeddings.create(model="embed-deploy", input="duck")

    assert result.data[0].embedding == EMBEDDING
    assert_sent_by_sdk(mock, mock.only(), "/openai/deployments/embed-deploy/embeddings")


def test_entra_token_is_sent_as_bearer(proxy, mock):
    with openai.AzureOpenAI(
        azure_endpoint=proxy.url, azure_ad_token="entra-token-1", api_version=API_VERSION,
        azure_deployment=DEPLOYMENT, max_retries=0,
    ) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.choices[0].message.content == ANSWER
    recorded = mock.only()
    assert recorded.header("Authorization") == "Bearer entra-token-1"
    assert recorded.header("api-key") is None


def test_v1_api_with_the_plain_openai_client(proxy, mock):
    """Azure's `/openai/v1/` API is reached with `OpenAI(base_url=<endpoint>/openai/v1/)`."""
    with openai.OpenAI(base_url=f"{proxy.url}/openai/v1/", api_key=API_KEY, max_retries=0) as client:
        completion = client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)

    assert completion.choices[0].message.content == ANSWER
    recorded = mock.only()
    assert recorded.raw_path == "/openai/v1/chat/completions"
    assert recorded.header("Authorization") == f"Bearer {API_KEY}"
