// Google Gemini through the official `@google/genai` npm package, with only httpOptions.baseUrl
// changed, against a vertex_ai proxy in both of the SDK's modes:
//   Vertex mode: Application Default Credentials of type external_account (harness
//     `googleCredentialsFile()`), whose token exchange at the mock's /token google-auth-library
//     does itself; the proxy passes the resulting bearer token through.
//   Gemini API mode (API key): /v1beta/models/… paths with x-goog-api-key, which the vertex_ai
//     provider forwards like the Vertex paths.
// Each: generateContent, generateContentStream, the cache, and an injected 429 raising ApiError.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ApiError, GoogleGenAI } from '@google/genai';

import {
  ANSWER,
  ANSWER_CHUNKS,
  GOOGLE_AUDIENCE,
  GOOGLE_SUBJECT_TOKEN,
  GOOGLE_SUBJECT_TOKEN_TYPE,
  INPUT_TOKENS,
  MINTED_TOKEN,
  OUTPUT_TOKENS,
  TEST_TIMEOUT_MS,
  TIMEOUT_MS,
  collect,
  rejection,
  useSuite,
} from './harness.mjs';

const PROJECT = 'js-project';
const LOCATION = 'us-central1';
const MODEL = 'gemini-2.0-flash';
const API_KEY = 'test-key';
// The SDK's default API versions: v1beta1 for Vertex AI, v1beta for the Gemini API.
const VERTEX_PATH = `/v1beta1/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/${MODEL}`;
const GEMINI_PATH = `/v1beta/models/${MODEL}`;
const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const REQUEST = { model: MODEL, contents: 'Say hello' };
const SENT_BODY = { contents: [{ parts: [{ text: 'Say hello' }], role: 'user' }] };
const options = { timeout: TEST_TIMEOUT_MS };

const suite = useSuite(import.meta.url);

// No retryOptions: the SDK then makes one attempt (it retries 429 only when asked to).
function vertexClient(proxy) {
  return new GoogleGenAI({
    vertexai: true,
    project: PROJECT,
    location: LOCATION,
    httpOptions: { baseUrl: proxy.url, timeout: TIMEOUT_MS },
    googleAuthOptions: { keyFilename: suite.googleCredentialsFile() },
  });
}

function apiKeyClient(proxy) {
  return new GoogleGenAI({ apiKey: API_KEY, httpOptions: { baseUrl: proxy.url, timeout: TIMEOUT_MS } });
}

function assertAnswer(response) {
  assert.equal(response.text, ANSWER);
  assert.equal(response.usageMetadata.promptTokenCount, INPUT_TOKENS);
  assert.equal(response.usageMetadata.candidatesTokenCount, OUTPUT_TOKENS);
  assert.equal(response.candidates[0].finishReason, 'STOP');
}

/** The `x-cache` header of an answer (the SDK keeps the response headers on every answer and chunk). */
function xCache(response) {
  return response.sdkHttpResponse?.headers?.['x-cache'];
}

async function streamed(ai) {
  const chunks = await collect(await ai.models.generateContentStream(REQUEST));
  return { cache: xCache(chunks[0]), chunks, text: chunks.map((chunk) => chunk.text).join('') };
}

async function generated(ai) {
  const response = await ai.models.generateContent(REQUEST);
  return { cache: xCache(response), response };
}

describe('Vertex mode (external_account credentials)', () => {
  test('generateContent carries the token google-auth-library exchanged for', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    const { cache, response } = await generated(vertexClient(proxy));

    assertAnswer(response);
    assert.equal(cache, 'MISS');
    const recorded = await suite.mock.only(':generateContent');
    assert.equal(recorded.method, 'POST');
    assert.equal(recorded.raw_path, `${VERTEX_PATH}:generateContent`);
    assert.equal(recorded.header('authorization'), `Bearer ${MINTED_TOKEN}`);
    assert.match(recorded.header('x-goog-api-client') ?? '', /google-genai-sdk\//);
    assert.deepEqual(recorded.json(), SENT_BODY);

    // The client (not the proxy) exchanged the subject token at the credentials' token_url.
    const exchange = await suite.mock.only('/token');
    assert.equal(exchange.method, 'POST');
    assert.deepEqual(Object.fromEntries(new URLSearchParams(exchange.body)), {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      audience: GOOGLE_AUDIENCE,
      scope: CLOUD_PLATFORM_SCOPE,
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      subject_token: GOOGLE_SUBJECT_TOKEN,
      subject_token_type: GOOGLE_SUBJECT_TOKEN_TYPE,
    });
    assert.equal((await suite.mock.requests()).length, 2, 'the token exchange and the call, nothing else');
  });

  test('generateContentStream delivers the chunks as server-sent events', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    const { cache, chunks } = await streamed(vertexClient(proxy));

    assert.deepEqual(chunks.map((chunk) => chunk.text), ANSWER_CHUNKS);
    assert.equal(chunks.at(-1).usageMetadata.candidatesTokenCount, OUTPUT_TOKENS);
    assert.equal(chunks.at(-1).candidates[0].finishReason, 'STOP');
    assert.equal(cache, 'MISS');
    const recorded = await suite.mock.only(':streamGenerateContent');
    assert.equal(recorded.raw_path, `${VERTEX_PATH}:streamGenerateContent?alt=sse`);
    assert.equal(recorded.header('authorization'), `Bearer ${MINTED_TOKEN}`);
  });

  test('the repeat of a call is a cache HIT, and so is the repeat of a stream', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    const ai = vertexClient(proxy);

    const [first, second] = await proxy.repeatIsHit(() => generated(ai), { upstreamPath: ':generateContent' });
    assertAnswer(second.response);
    assert.deepEqual(second.response.candidates, first.response.candidates);

    const [, replayed] = await proxy.repeatIsHit(() => streamed(ai), { upstreamPath: ':streamGenerateContent' });
    assert.deepEqual(replayed.chunks.map((chunk) => chunk.text), ANSWER_CHUNKS);
    assert.equal((await suite.mock.requests('/token')).length, 1, 'one client, one token exchange');
  });

  test('an injected 429 raises ApiError with status 429', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    await proxy.injectRateLimit();
    const error = await rejection(() => vertexClient(proxy).models.generateContent(REQUEST), (e) => e instanceof ApiError, 'generateContent');

    assert.equal(error.status, 429);
    const body = JSON.parse(error.message);
    assert.equal(body.error.code, 429);
    assert.equal(body.error.status, 'RESOURCE_EXHAUSTED', 'the body has the Google error shape');
    assert.deepEqual(
      (await suite.mock.requests()).map((r) => r.path),
      ['/token'],
      'the client got its token; the call itself never reached the upstream',
    );
  });
});

describe('Gemini API mode (API key)', () => {
  test('generateContent goes to /v1beta/models/… with x-goog-api-key and no Authorization', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    const { cache, response } = await generated(apiKeyClient(proxy));

    assertAnswer(response);
    assert.equal(cache, 'MISS');
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, `${GEMINI_PATH}:generateContent`);
    assert.equal(recorded.header('x-goog-api-key'), API_KEY);
    assert.equal(recorded.header('authorization'), undefined);
    assert.deepEqual(recorded.json(), SENT_BODY);
  });

  test('generateContentStream delivers the chunks', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    const { chunks } = await streamed(apiKeyClient(proxy));

    assert.deepEqual(chunks.map((chunk) => chunk.text), ANSWER_CHUNKS);
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, `${GEMINI_PATH}:streamGenerateContent?alt=sse`);
    assert.equal(recorded.header('x-goog-api-key'), API_KEY);
  });

  test('the repeat of a call is a cache HIT, and so is the repeat of a stream', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    const ai = apiKeyClient(proxy);

    const [, second] = await proxy.repeatIsHit(() => generated(ai));
    assertAnswer(second.response);
    const [, replayed] = await proxy.repeatIsHit(() => streamed(ai));
    assert.equal(replayed.text, ANSWER);
  });

  test('an injected 429 raises ApiError with status 429', options, async () => {
    const proxy = await suite.createProxy('vertex_ai');
    await proxy.injectRateLimit();
    const error = await rejection(() => apiKeyClient(proxy).models.generateContentStream(REQUEST), (e) => e instanceof ApiError, 'generateContentStream');

    assert.equal(error.status, 429);
    assert.equal(JSON.parse(error.message).error.status, 'RESOURCE_EXHAUSTED');
    assert.equal((await suite.mock.requests()).length, 0);
  });
});
