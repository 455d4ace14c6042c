"""Every official SDK against proxies whose upstream is the built-in emulator: no mock upstream,
no provider key, no network. The SDKs parse every answer (JSON, SSE, AWS event streams) as they
would the real API's, and the calls are logged with tokens and cost."""

import json
import time

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

PROMPT = "Tell me about rubber ducks"
ECHO = "“Tell me about rubber ducks”"
# Quick answers: the pacing itself is covered by the Rust integration tests.
FAST = {"ttft_ms": 5, "tokens_per_second": 5000}
MESSAGES = [{"role": "user", "content": PROMPT}]
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(autouse=True)
def _through_proxy_only(direct):
    if direct:
        pytest.skip("the emulator is part of Rubberduck")


@pytest.fixture(autouse=True)
def _nothing_reaches_an_upstream(mock):
    yield
    assert mock.received() == [], "an emulated call reached the mock upstream"


@pytest.fixture(scope="module")
def emulated(create_proxy):
    """emulated(provider) -> Proxy answered by the emulator (one per provider per module)."""
    proxies = {}

    def get(provider):
        if provider not in proxies:
            proxies[provider] = create_proxy(provider, upstream_url="emulator", emulator=FAST)
        return proxies[provider]

    return get


def logs_of(rubberduck, proxy, count):
    deadline = time.monotonic() + 10
    while True:
        status, body = rubberduck.api("GET", f"/api/logs?proxy_id={proxy.info['id']}")
        assert status == 200, body
        if body["total"] >= count or time.monotonic() > deadline:
            assert body["total"] == count, body
            return body["logs"]
        time.sleep(0.05)


# --- OpenAI, Azure OpenAI, DeepSeek ----------------------------------------------------------

@pytest.fixture
def openai_client(emulated):
    with openai.OpenAI(api_key="offline", base_url=f"{emulated('openai').url}/v1", max_retries=0, timeout=30) as client:
        yield client


def test_openai_chat_completion_and_stream(openai_client):
    completion = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    text = completion.choices[0].message.content
    assert ECHO in text
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0

    chunks = list(openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == completion.usage.prompt_tokens


def test_openai_responses_and_stream_helper(openai_client):
    response = openai_client.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="Be brief.")
    assert ECHO in response.output_text
    assert response.usage.output_tokens > 0

    with openai_client.responses.stream(model="gpt-4o-mini", input=PROMPT, instructions="Be brief.") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == response.output_text
    assert final.output_text == response.output_text
    assert final.usage.total_tokens == response.usage.total_tokens


def test_openai_embeddings_and_models(openai_client):
    # The SDK asks for base64 and decodes it.
    embedded = openai_client.embeddings.create(model="text-embedding-3-small", input=["duck", "goose"])
    assert [len(d.embedding) for d in embedded.data] == [1536, 1536]
    assert abs(sum(x * x for x in embedded.data[0].embedding) - 1.0) < 1e-3
    again = openai_client.embeddings.create(model="text-embedding-3-small", input="duck", dimensions=16)
    assert len(again.data[0].embedding) == 16
    assert embedded.usage.prompt_tokens > 0

    models = [m.id for m in openai_client.models.list()]
    assert "gpt-4o-mini" in models


def test_openai_unknown_route_is_a_not_found_error(openai_client):
    with pytest.raises(openai.NotFoundError):
        openai_client.fine_tuning.jobs.list()


def test_azure_openai_deployment(emulated):
    with openai.AzureOpenAI(
        azure_endpoint=emulated("azure_openai").url, api_version="2024-10-21", api_key="offline",
        azure_deployment="my-gpt", max_retries=0, timeout=30,
    ) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert ECHO in completion.choices[0].message.content
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == completion.choices[0].message.content


def test_deepseek_chat(emulated):
    with openai.OpenAI(api_key="offline", base_url=emulated("deepseek").url, max_retries=0, timeout=30) as client:
        completion = client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
        assert ECHO in completion.choices[0].message.content
        assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


# --- Anthropic -------------------------------------------------------------------------------

@pytest.fixture
def anthropic_client(emulated):
    with anthropic.Anthropic(api_key="offline", base_url=emulated("anthropic").url, max_retries=0, timeout=30) as client:
        yield client


def test_anthropic_messages_and_stream(anthropic_client):
    message = anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=256, system="Be brief.", messages=MESSAGES)
    text = message.content[0].text
    assert ECHO in text
    assert message.stop_reason == "end_turn"

    with anthropic_client.messages.stream(model="claude-haiku-4-5", max_tokens=256, system="Be brief.", messages=MESSAGES) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == message.usage.input_tokens

    short = anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=2, messages=MESSAGES)
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens == 2


def test_anthropic_count_tokens_and_models(anthropic_client):
    counted = anthropic_client.messages.count_tokens(model="claude-haiku-4-5", system="Be brief.", messages=MESSAGES)
    message = anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=16, system="Be brief.", messages=MESSAGES)
    assert counted.input_tokens == message.usage.input_tokens
    assert [m.type for m in anthropic_client.models.list()][0] == "model"


# --- AWS Bedrock (boto3) ---------------------------------------------------------------------

@pytest.fixture
def bedrock(emulated):
    # Any credentials: the emulator needs no valid signature.
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=emulated("bedrock").url,
        aws_access_key_id="AKIDOFFLINE", aws_secret_access_key="offline",
        config=Config(retries={"max_attempts": 1}, read_timeout=30, connect_timeout=10),
    )
    yield client
    client.close()


ANTHROPIC_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 128, "messages": MESSAGES}


def test_bedrock_invoke_model_and_stream(bedrock):
    response = bedrock.invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(ANTHROPIC_BODY))
    answer = json.loads(response["body"].read())
    text = answer["content"][0]["text"]
    assert ECHO in text
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-output-token-count"] == str(answer["usage"]["output_tokens"])

    streamed = bedrock.invoke_model_with_response_stream(modelId=BEDROCK_MODEL, body=json.dumps(ANTHROPIC_BODY))
    events = [json.loads(event["chunk"]["bytes"]) for event in streamed["body"]]
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == text
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == answer["usage"]["output_tokens"]


def test_bedrock_converse_and_stream(bedrock):
    messages = [{"role": "user", "content": [{"text": PROMPT}]}]
    response = bedrock.converse(modelId=BEDROCK_MODEL, messages=messages, inferenceConfig={"maxTokens": 128})
    text = response["output"]["message"]["content"][0]["text"]
    assert ECHO in text
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]

    events = list(bedrock.converse_stream(modelId=BEDROCK_MODEL, messages=messages, inferenceConfig={"maxTokens": 128})["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == text
    assert events[-1]["metadata"]["usage"] == usage


# --- Vertex AI and the Gemini API (google-genai) ---------------------------------------------

def test_vertex_generate_content_and_stream(emulated):
    client = genai.Client(
        vertexai=True, project="offline", location="us-central1", credentials=Credentials(token="offline"),
        http_options=types.HttpOptions(base_url=emulated("vertex_ai").url, timeout=30_000),
    )
    response = client.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
    assert ECHO in response.text
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.candidates_token_count > 0

    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents=PROMPT))
    assert "".join(c.text or "" for c in chunks) == response.text
    assert chunks[-1].usage_metadata.candidates_token_count == response.usage_metadata.candidates_token_count

    counted = client.models.count_tokens(model="gemini-2.0-flash", contents=PROMPT)
    assert counted.total_tokens == response.usage_metadata.prompt_token_count


def test_gemini_api_mode(emulated):
    client = genai.Client(api_key="offline", http_options=types.HttpOptions(base_url=emulated("vertex_ai").url, timeout=30_000))
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents=PROMPT, config=types.GenerateContentConfig(max_output_tokens=3)
    )
    assert response.usage_metadata.candidates_token_count == 3
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


# --- what the proxy records ------------------------------------------------------------------

def test_emulated_calls_are_logged_with_tokens_and_cost(create_proxy, rubberduck):
    proxy = create_proxy("openai", upstream_url="emulator", emulator=FAST)
    with openai.OpenAI(api_key="offline", base_url=f"{proxy.url}/v1", max_retries=0) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        list(client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ))
    for entry in logs_of(rubberduck, proxy, 2):
        assert entry["status"] == 200
        assert entry["model"] == "gpt-4o-mini"
        assert entry["input_tokens"] == completion.usage.prompt_tokens
        assert entry["output_tokens"] == completion.usage.completion_tokens
        assert entry["cost_usd"] > 0
