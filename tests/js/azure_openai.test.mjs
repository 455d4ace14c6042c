// Azure OpenAI through the `openai` npm package's AzureOpenAI client, with only the endpoint
// changed: deployment paths with api-version, the api-key header, streams, the cache, a 429.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AzureOpenAI, RateLimitError } from 'openai';

import { ANSWER, ANSWER_CHUNKS, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite, withCacheHeader } from './harness.mjs';

const API_KEY = 'azure-test-key';
const API_VERSION = '2024-10-21';
const DEPLOYMENT = 'gpt-4o-mini-prod';
const CHAT_PATH = `/openai/deployments/${DEPLOYMENT}/chat/completions?api-version=${API_VERSION}`;
const options = { timeout: TEST_TIMEOUT_MS };
const messages = [{ role: 'user', content: 'Say hello' }];

const suite = useSuite(import.meta.url);

function client(proxy) {
  return new AzureOpenAI({
    endpoint: proxy.url,
    apiKey: API_KEY,
    apiVersion: API_VERSION,
    deployment: DEPLOYMENT,
    maxRetries: 0,
    timeout: TIMEOUT_MS,
  });
}

test('a completion goes to the deployment path with the api-key header', options, async () => {
  const proxy = await suite.createProxy('azure_openai');
  const { data, response } = await client(proxy).chat.completions.create({ model: DEPLOYMENT, messages }).withResponse();

  assert.equal(data.choices[0].message.content, ANSWER);
  assert.equal(response.headers.get('x-cache'), 'MISS');
  const recorded = await suite.mock.only();
  assert.equal(recorded.raw_path, CHAT_PATH);
  assert.equal(recorded.header('api-key'), API_KEY);
});

test('a stream arrives chunk by chunk', options, async () => {
  const proxy = await suite.createProxy('azure_openai');
  const stream = await client(proxy).chat.completions.create({ model: DEPLOYMENT, messages, stream: true });
  const chunks = await collect(stream);

  assert.deepEqual(chunks.map((c) => c.choices[0]?.delta?.content).filter(Boolean), ANSWER_CHUNKS);
  assert.equal((await suite.mock.only()).raw_path, CHAT_PATH);
});

test('the repeat of a completion is a cache HIT', options, async () => {
  const proxy = await suite.createProxy('azure_openai');
  const azure = client(proxy);
  const [, second] = await proxy.repeatIsHit(() => withCacheHeader(azure.chat.completions.create({ model: DEPLOYMENT, messages })));

  assert.equal(second.data.choices[0].message.content, ANSWER);
  assert.equal((await suite.mock.only()).raw_path, CHAT_PATH);
});

test('an injected 429 raises the SDK RateLimitError', options, async () => {
  const proxy = await suite.createProxy('azure_openai');
  await proxy.injectRateLimit();
  const error = await rejection(
    () => client(proxy).chat.completions.create({ model: DEPLOYMENT, messages }),
    (e) => e instanceof RateLimitError,
    'chat.completions.create',
  );

  assert.equal(error.status, 429);
  assert.equal((await suite.mock.requests()).length, 0);
});
