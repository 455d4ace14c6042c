// AWS Bedrock through `@aws-sdk/client-bedrock-runtime` with its DEFAULT request handler (which
// speaks HTTP/2 cleartext by prior knowledge to an http:// endpoint), with only `endpoint`
// changed: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream, the cache, a 429
// raising ThrottlingException. The proxy re-signs every request with its own credentials.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
  ThrottlingException,
} from '@aws-sdk/client-bedrock-runtime';

import { ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, PROXY_AWS_ACCESS_KEY, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite } from './harness.mjs';

const CLIENT_REGION = 'eu-west-3';
const MODEL_ID = 'anthropic.claude-3-haiku-20240307-v1:0';
const MODEL_PATH = `/model/${encodeURIComponent(MODEL_ID)}`;
const MESSAGES = [{ role: 'user', content: [{ text: 'Say hello' }] }];
const ANTHROPIC_BODY = {
  anthropic_version: 'bedrock-2023-05-31',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'Say hello' }],
};
const options = { timeout: TEST_TIMEOUT_MS };

const suite = useSuite(import.meta.url);

function client(proxy) {
  // No requestHandler: the SDK's default, as users have it.
  return new BedrockRuntimeClient({
    region: CLIENT_REGION,
    endpoint: proxy.url,
    credentials: { accessKeyId: 'AKIDCLIENT', secretAccessKey: 'client-secret' },
    maxAttempts: 1,
  });
}

function send(bedrock, command) {
  return bedrock.send(command, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
}

/** The request reached the mock signed by the proxy's own credentials, for the client's region. */
function assertResigned(recorded) {
  const authorization = recorded.header('authorization') ?? '';
  const scope = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/.exec(authorization);
  assert.ok(scope, `a SigV4 Authorization header: ${authorization}`);
  assert.deepEqual(scope.slice(1), [PROXY_AWS_ACCESS_KEY, CLIENT_REGION, 'bedrock']);
}

test('the client uses the SDK default request handler (HTTP/2)', () => {
  const bedrock = client({ url: 'http://127.0.0.1:9' });
  assert.equal(bedrock.config.requestHandler.constructor.name, 'NodeHttp2Handler');
  bedrock.destroy();
});

test('ConverseCommand answers through the proxy, re-signed', options, async () => {
  const proxy = await suite.createProxy('bedrock', { aws_region: 'us-west-2' });
  const bedrock = client(proxy);
  try {
    const response = await send(bedrock, new ConverseCommand({ modelId: MODEL_ID, messages: MESSAGES, inferenceConfig: { maxTokens: 64 } }));

    assert.equal(response.output.message.content[0].text, ANSWER);
    assert.deepEqual(response.usage, { inputTokens: INPUT_TOKENS, outputTokens: OUTPUT_TOKENS, totalTokens: INPUT_TOKENS + OUTPUT_TOKENS });
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, `${MODEL_PATH}/converse`);
    assert.deepEqual(recorded.json().messages, MESSAGES);
    assertResigned(recorded);
  } finally {
    bedrock.destroy();
  }
});

test('ConverseStreamCommand delivers the event stream', options, async () => {
  const proxy = await suite.createProxy('bedrock');
  const bedrock = client(proxy);
  try {
    const response = await send(bedrock, new ConverseStreamCommand({ modelId: MODEL_ID, messages: MESSAGES }));
    const events = await collect(response.stream);

    const text = events.filter((e) => e.contentBlockDelta).map((e) => e.contentBlockDelta.delta.text);
    assert.deepEqual(text, ANSWER_CHUNKS);
    assert.equal(events.find((e) => e.messageStop)?.messageStop.stopReason, 'end_turn');
    assert.equal(events.find((e) => e.metadata)?.metadata.usage.outputTokens, OUTPUT_TOKENS);
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, `${MODEL_PATH}/converse-stream`);
    assertResigned(recorded);
  } finally {
    bedrock.destroy();
  }
});

test('InvokeModel and InvokeModelWithResponseStream carry the model body both ways', options, async () => {
  const proxy = await suite.createProxy('bedrock');
  const bedrock = client(proxy);
  try {
    const body = JSON.stringify(ANTHROPIC_BODY);
    const invoked = await send(bedrock, new InvokeModelCommand({ modelId: MODEL_ID, body, contentType: 'application/json', accept: 'application/json' }));
    assert.equal(JSON.parse(Buffer.from(invoked.body).toString()).content[0].text, ANSWER);

    const streamed = await send(bedrock, new InvokeModelWithResponseStreamCommand({ modelId: MODEL_ID, body, contentType: 'application/json' }));
    const events = (await collect(streamed.body)).map((e) => JSON.parse(Buffer.from(e.chunk.bytes).toString()));
    const text = events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text);
    assert.deepEqual(text, ANSWER_CHUNKS);

    const [plain, stream] = await suite.mock.requests();
    assert.equal(plain.raw_path, `${MODEL_PATH}/invoke`);
    assert.equal(plain.body, body);
    assert.equal(stream.raw_path, `${MODEL_PATH}/invoke-with-response-stream`);
  } finally {
    bedrock.destroy();
  }
});

test('the repeat of a Converse call is a cache HIT, and so is the repeat of a stream', options, async () => {
  const proxy = await suite.createProxy('bedrock');
  const bedrock = client(proxy);
  try {
    // The SDK exposes no response headers: the cache's counters tell the HIT.
    const converse = async () => ({ response: await send(bedrock, new ConverseCommand({ modelId: MODEL_ID, messages: MESSAGES })) });
    const [first, second] = await proxy.repeatIsHit(converse, { headers: false });
    assert.equal(second.response.output.message.content[0].text, ANSWER);
    assert.deepEqual(second.response.usage, first.response.usage);

    const streamed = async () => {
      const response = await send(bedrock, new ConverseStreamCommand({ modelId: MODEL_ID, messages: MESSAGES }));
      const events = await collect(response.stream);
      return { text: events.filter((e) => e.contentBlockDelta).map((e) => e.contentBlockDelta.delta.text).join('') };
    };
    const [firstStream, secondStream] = await proxy.repeatIsHit(streamed, { headers: false });
    assert.equal(firstStream.text, ANSWER);
    assert.equal(secondStream.text, ANSWER);

    assert.equal((await suite.mock.requests()).length, 2, 'only the first of each reached the upstream');
  } finally {
    bedrock.destroy();
  }
});

test('an injected 429 raises ThrottlingException', options, async () => {
  const proxy = await suite.createProxy('bedrock');
  await proxy.injectRateLimit();
  const bedrock = client(proxy);
  try {
    const error = await rejection(
      () => send(bedrock, new ConverseCommand({ modelId: MODEL_ID, messages: MESSAGES })),
      (e) => e instanceof ThrottlingException,
      'ConverseCommand',
    );
    assert.equal(error.$metadata.httpStatusCode, 429);
    assert.equal((await suite.mock.requests()).length, 0);
  } finally {
    bedrock.destroy();
  }
});
