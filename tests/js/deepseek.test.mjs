// DeepSeek through the `openai` npm package (DeepSeek documents it as its client), with only
// baseURL changed to the proxy (no /v1, as DeepSeek documents): chat, streams, the cache, a 429.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

import { ANSWER, ANSWER_CHUNKS, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite, withCacheHeader } from './harness.mjs';

const API_KEY = 'sk-deepseek-test';
const MODEL = 'deepseek-chat';
const options = { timeout: TEST_TIMEOUT_MS };
const messages = [{ role: 'user', content: 'Say hello' }];

const suite = useSuite(import.meta.url);

function client(proxy) {
  return new OpenAI({ apiKey: API_KEY, baseURL: proxy.url, maxRetries: 0, timeout: TIMEOUT_MS });
}

test('a completion reaches the upstream with the bearer key', options, async () => {
  const proxy = await suite.createProxy('deepseek');
  const completion = await client(proxy).chat.completions.create({ model: MODEL, messages });

  assert.equal(completion.choices[0].message.content, ANSWER);
  assert.equal(completion.model, MODEL);
  const recorded = await suite.mock.only();
  // The upstream base carries /v1 (like https://api.deepseek.com/v1); the SDK sent none.
  assert.equal(recorded.raw_path, '/v1/chat/completions');
  assert.equal(recorded.header('authorization'), `Bearer ${API_KEY}`);
});

test('a stream arrives chunk by chunk', options, async () => {
  const proxy = await suite.createProxy('deepseek');
  const stream = await client(proxy).chat.completions.create({ model: MODEL, messages, stream: true });
  const chunks = await collect(stream);

  assert.deepEqual(chunks.map((c) => c.choices[0]?.delta?.content).filter(Boolean), ANSWER_CHUNKS);
});

test('the repeat of a completion is a cache HIT', options, async () => {
  const proxy = await suite.createProxy('deepseek');
  const deepseek = client(proxy);
  const [first, second] = await proxy.repeatIsHit(() => withCacheHeader(deepseek.chat.completions.create({ model: MODEL, messages })));

  assert.equal(second.data.choices[0].message.content, ANSWER);
  assert.deepEqual(second.data, first.data);
});

test('an injected 429 raises the SDK RateLimitError', options, async () => {
  const proxy = await suite.createProxy('deepseek');
  await proxy.injectRateLimit();
  const error = await rejection(
    () => client(proxy).chat.completions.create({ model: MODEL, messages }),
    (e) => e instanceof OpenAI.RateLimitError,
    'chat.completions.create',
  );

  assert.equal(error.status, 429);
  assert.equal((await suite.mock.requests()).length, 0);
});
