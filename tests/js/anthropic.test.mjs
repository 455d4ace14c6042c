// Anthropic through the official `@anthropic-ai/sdk` npm package, with only baseURL changed:
// messages (plain and streamed), count_tokens, the cache, and an injected 429.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';

import { ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite, withCacheHeader, within } from './harness.mjs';

const API_KEY = 'sk-ant-js-test';
const MODEL = 'claude-haiku-4-5';
const options = { timeout: TEST_TIMEOUT_MS };
const request = { model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Say hello' }] };

const suite = useSuite(import.meta.url);

function client(proxy) {
  return new Anthropic({ apiKey: API_KEY, baseURL: proxy.url, maxRetries: 0, timeout: TIMEOUT_MS });
}

function sentKey(recorded) {
  // This SDK sends x-api-key; newer ones send a bearer token. The proxy passes either through.
  return recorded.header('x-api-key') ?? recorded.header('authorization')?.replace(/^Bearer /, '');
}

test('a message reaches the upstream with the key and anthropic-version, and comes back', options, async () => {
  const proxy = await suite.createProxy('anthropic');
  const { data, response } = await client(proxy).messages.create(request).withResponse();

  assert.equal(data.content[0].text, ANSWER);
  assert.equal(data.usage.input_tokens, INPUT_TOKENS);
  assert.equal(response.headers.get('x-cache'), 'MISS');
  const recorded = await suite.mock.only();
  assert.equal(recorded.raw_path, '/v1/messages');
  assert.equal(sentKey(recorded), API_KEY);
  assert.ok(recorded.header('anthropic-version'), 'anthropic-version is kept');
  assert.deepEqual(recorded.json(), request);
});

test('messages.stream delivers text deltas and the final message', options, async () => {
  const proxy = await suite.createProxy('anthropic');
  const stream = client(proxy).messages.stream(request);
  const texts = [];
  stream.on('text', (text) => texts.push(text));
  const message = await within(stream.finalMessage(), 'finalMessage');

  assert.deepEqual(texts, ANSWER_CHUNKS);
  assert.equal(message.content[0].text, ANSWER);
  assert.equal(message.usage.output_tokens, OUTPUT_TOKENS);
  assert.equal((await suite.mock.only('/v1/messages')).json().stream, true);
});

test('the repeat of a message is a cache HIT, and so is the repeat of a stream', options, async () => {
  const proxy = await suite.createProxy('anthropic');
  const anthropic = client(proxy);
  const [first, second] = await proxy.repeatIsHit(() => withCacheHeader(anthropic.messages.create(request)));
  assert.deepEqual(second.data, first.data);

  const streamed = async () => {
    const { data, response } = await anthropic.messages.create({ ...request, stream: true }).withResponse();
    const events = await collect(data);
    const text = events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
    return { cache: response.headers.get('x-cache'), text };
  };
  const [firstStream, secondStream] = await proxy.repeatIsHit(streamed);
  assert.deepEqual(firstStream, { cache: 'MISS', text: ANSWER });
  assert.deepEqual(secondStream, { cache: 'HIT', text: ANSWER });

  assert.equal((await suite.mock.requests()).length, 2, 'one plain and one streamed call reached the upstream');
});

test('count_tokens goes through', options, async () => {
  const proxy = await suite.createProxy('anthropic');
  const { model, messages } = request;
  const counted = await client(proxy).messages.countTokens({ model, messages });

  assert.equal(counted.input_tokens, INPUT_TOKENS);
  assert.equal((await suite.mock.only()).raw_path, '/v1/messages/count_tokens');
});

test('an injected 429 raises the SDK RateLimitError', options, async () => {
  const proxy = await suite.createProxy('anthropic');
  await proxy.injectRateLimit();
  const error = await rejection(
    () => client(proxy).messages.create(request),
    (e) => e instanceof Anthropic.RateLimitError,
    'messages.create',
  );

  assert.equal(error.status, 429);
  assert.equal(error.error?.type, 'error', 'the body has the Anthropic error shape');
  assert.equal(error.error?.error?.type, 'rate_limit_error');
  assert.equal((await suite.mock.requests()).length, 0);
});
