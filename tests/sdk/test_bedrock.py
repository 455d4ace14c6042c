"""AWS Bedrock through `boto3` (`bedrock-runtime` with `endpoint_url`), `anthropic.AnthropicBedrock`
and plain httpx with `X-AWS-*` credential headers, through a Bedrock proxy.

The proxy re-signs every request with SigV4; the mock recomputes the signature with botocore's own
signer and the secret the proxy should have used.
"""

import base64
import json

import anthropic
import boto3
import httpx
import pytest
from botocore.config import Config

from conftest import PROXY_AWS_ACCESS_KEY, PROXY_AWS_SECRET_KEY
from mock_upstream import ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, decode_event_frames, verify_sigv4

CLIENT_ACCESS_KEY = "AKIDCLIENT"
CLIENT_SECRET_KEY = "client-secret"
CLIENT_REGION = "eu-west-3"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
ENCODED_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1%3A0"
ANTHROPIC_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello"}],
}
CONVERSE_MESSAGES = [{"role": "user", "content": [{"text": "Say hello"}]}]


@pytest.fixture(scope="module")
def proxy(create_proxy):
    return create_proxy("bedrock", aws_region="us-west-2")


@pytest.fixture
def client(proxy):
    client = boto3.client(
        "bedrock-runtime",
        region_name=CLIENT_REGION,
        endpoint_url=proxy.url,
        aws_access_key_id=CLIENT_ACCESS_KEY,
        aws_secret_access_key=CLIENT_SECRET_KEY,
        config=Config(retries={"max_attempts": 1}, read_timeout=30, connect_timeout=10),
    )
    yield client
    client.close()


def assert_signed_for_upstream(recorded, direct, *, access_key=PROXY_AWS_ACCESS_KEY, secret=PROXY_AWS_SECRET_KEY, region=CLIENT_REGION):
    """The request the mock received carries a valid SigV4 signature by the expected credentials."""
    if direct:  # nothing re-signs: the SDK's own signature
        access_key, secret = CLIENT_ACCESS_KEY, CLIENT_SECRET_KEY
    scope = verify_sigv4(recorded, secret)
    assert scope["access_key"] == access_key
    assert scope["region"] == region
    assert scope["service"] == "bedrock"
    assert not [h for h in recorded.header_names() if h.startswith("x-aws-")], recorded.headers
    return scope


def test_invoke_model(client, mock, direct):
    body = json.dumps(ANTHROPIC_BODY).encode()
    response = client.invoke_model(modelId=MODEL_ID, body=body, contentType="application/json", accept="application/json")

    answer = json.loads(response["body"].read())
    assert answer["content"][0]["text"] == ANSWER
    assert answer["usage"] == {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(INPUT_TOKENS)
    recorded = mock.only()
    assert recorded.method == "POST"
    assert recorded.raw_path == f"/model/{ENCODED_MODEL_ID}/invoke", "boto3 encodes ':' as %3A"
    assert recorded.body == body
    assert recorded.header("Host") == f"127.0.0.1:{mock.port}"
    assert recorded.header("Content-Type") == "application/json"
    assert_signed_for_upstream(recorded, direct)


def test_invoke_model_with_response_stream(client, mock, direct):
    response = client.invoke_model_with_response_stream(modelId=MODEL_ID, body=json.dumps(ANTHROPIC_BODY))

    events = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == ANSWER_CHUNKS
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == OUTPUT_TOKENS
    recorded = mock.only()
    assert recorded.raw_path == f"/model/{ENCODED_MODEL_ID}/invoke-with-response-stream"
    assert_signed_for_upstream(recorded, direct)


def test_converse(client, mock, direct):
    response = client.converse(modelId=MODEL_ID, messages=CONVERSE_MESSAGES, inferenceConfig={"maxTokens": 64})

    assert response["output"]["message"]["content"][0]["text"] == ANSWER
    assert response["usage"] == {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS, "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS}
    assert response["stopReason"] == "end_turn"
    recorded = mock.only()
    assert recorded.raw_path == f"/model/{ENCODED_MODEL_ID}/converse"
    assert recorded.json() == {"messages": CONVERSE_MESSAGES, "inferenceConfig": {"maxTokens": 64}}
    assert_signed_for_upstream(recorded, direct)


def test_converse_stream(client, mock, direct):
    response = client.converse_stream(modelId=MODEL_ID, messages=CONVERSE_MESSAGES)

    events = list(response["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == ["messageStart"] + ["contentBlockDelta"] * len(ANSWER_CHUNKS) + ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == ANSWER
    assert events[-1]["metadata"]["usage"]["outputTokens"] == OUTPUT_TOKENS
    recorded = mock.only()
    assert recorded.raw_path == f"/model/{ENCODED_MODEL_ID}/converse-stream"
    assert_signed_for_upstream(recorded, direct)


def test_credentials_from_x_aws_headers(proxy, mock, through_proxy):
    """A client without an AWS SDK sends its credentials as X-AWS-* headers; the proxy signs with
    them and none of them reaches the upstream."""
    body = json.dumps(ANTHROPIC_BODY).encode()
    response = httpx.post(
        f"{proxy.url}/model/{ENCODED_MODEL_ID}/invoke",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-AWS-Access-Key": "AKIDHEADER",
            "X-AWS-Secret-Key": "header-secret",
            "X-AWS-Session-Token": "header-session-token",
            "X-AWS-Region": "ap-southeast-2",
        },
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == ANSWER
    recorded = mock.only()
    assert recorded.raw_path == f"/model/{ENCODED_MODEL_ID}/invoke"
    assert recorded.body == body
    assert recorded.header("X-Amz-Security-Token") == "header-session-token"
    assert_signed_for_upstream(recorded, False, access_key="AKIDHEADER", secret="header-secret", region="ap-southeast-2")
    assert "header-secret" not in json.dumps(recorded.headers)


def test_streamed_invoke_with_x_aws_headers(proxy, mock, through_proxy):
    with httpx.stream(
        "POST",
        f"{proxy.url}/model/{ENCODED_MODEL_ID}/invoke-with-response-stream",
        content=json.dumps(ANTHROPIC_BODY).encode(),
        headers={"X-AWS-Access-Key": "AKIDHEADER", "X-AWS-Secret-Key": "header-secret", "X-AWS-Region": "eu-central-1"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
        data = response.read()

    frames = decode_event_frames(data)
    assert len(frames) == len(ANSWER_CHUNKS) + 6
    assert all(headers[":event-type"] == "chunk" for headers, _ in frames)
    first = json.loads(base64.b64decode(json.loads(frames[0][1])["bytes"]))
    assert first["type"] == "message_start"
    assert_signed_for_upstream(mock.only(), False, access_key="AKIDHEADER", secret="header-secret", region="eu-central-1")


def test_region_falls_back_to_the_proxy_config(proxy, mock, through_proxy):
    """No client signature and no X-AWS-Region: the proxy's aws_region and its own credentials."""
    response = httpx.post(
        f"{proxy.url}/model/{ENCODED_MODEL_ID}/converse",
        json={"messages": CONVERSE_MESSAGES},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert_signed_for_upstream(mock.only(), False, region="us-west-2")


def test_anthropic_bedrock_sdk(proxy, mock, direct):
    """AnthropicBedrock leaves ':' unencoded in the model id; the signature must still verify."""
    client = anthropic.AnthropicBedrock(
        aws_access_key=CLIENT_ACCESS_KEY, aws_secret_key=CLIENT_SECRET_KEY, aws_region=CLIENT_REGION,
        base_url=proxy.url, max_retries=0, timeout=30,
    )
    message = client.messages.create(model=MODEL_ID, max_tokens=64, messages=ANTHROPIC_BODY["messages"])
    with client.messages.stream(model=MODEL_ID, max_tokens=64, messages=ANTHROPIC_BODY["messages"]) as stream:
        streamed = [e.delta.text for e in stream if e.type == "content_block_delta"]
    client.close()

    assert message.content[0].text == ANSWER
    assert message.usage.output_tokens == OUTPUT_TOKENS
    assert streamed == ANSWER_CHUNKS
    invoke, invoke_stream = mock.received()
    assert invoke.raw_path == f"/model/{MODEL_ID}/invoke"
    assert invoke_stream.raw_path == f"/model/{MODEL_ID}/invoke-with-response-stream"
    assert "anthropic_version" in invoke.json() and "model" not in invoke.json()
    assert_signed_for_upstream(invoke, direct)
    assert_signed_for_upstream(invoke_stream, direct)


def test_model_arn_stays_encoded(client, mock, direct):
    """Model ids may be ARNs: boto3 encodes their ':' and '/'; the path reaches the upstream as sent."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    response = client.converse(modelId=arn, messages=CONVERSE_MESSAGES)

    assert response["output"]["message"]["content"][0]["text"] == ANSWER
    recorded = mock.only()
    assert recorded.raw_path == "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/converse"
    assert_signed_for_upstream(recorded, direct)


def test_client_session_token_is_not_forwarded_with_other_credentials(proxy, mock, through_proxy):
    """The proxy signs with its own key (no session token): the client's token must not go along."""
    client = boto3.client(
        "bedrock-runtime", region_name=CLIENT_REGION, endpoint_url=proxy.url,
        aws_access_key_id=CLIENT_ACCESS_KEY, aws_secret_access_key=CLIENT_SECRET_KEY,
        aws_session_token="client-session-token", config=Config(retries={"max_attempts": 1}),
    )
    client.converse(modelId=MODEL_ID, messages=CONVERSE_MESSAGES)
    client.close()

    recorded = mock.only()
    assert recorded.header("X-Amz-Security-Token") is None, recorded.headers
    assert_signed_for_upstream(recorded, False)


def test_unreachable_upstream_is_a_bedrock_shaped_error(create_proxy, through_proxy):
    from botocore.exceptions import ClientError

    dead = create_proxy("bedrock", upstream_url="http://127.0.0.1:9")
    client = boto3.client(
        "bedrock-runtime", region_name=CLIENT_REGION, endpoint_url=dead.url,
        aws_access_key_id=CLIENT_ACCESS_KEY, aws_secret_access_key=CLIENT_SECRET_KEY,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=MODEL_ID, messages=CONVERSE_MESSAGES)
    client.close()

    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] in (502, 503, 504), error
    assert error["Error"]["Code"] not in ("", "502", "503", "504"), f"no x-amzn-ErrorType: {error}"
    assert error["Error"]["Message"], error
