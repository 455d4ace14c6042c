// OpenAI through the official `openai` npm package, with only baseURL changed: chat (plain and
// streamed), responses, embeddings, the cache, and an injected 429.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { ANSWER, ANSWER_CHUNKS, EMBEDDING, INPUT_TOKENS, OUTPUT_TOKENS, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite, withCacheHeader } from './harness.mjs';

const MODEL = 'gpt-4o-mini';
const API_KEY = 'sk-js-test';
const options = { timeout: TEST_TIMEOUT_MS };

const suite = useSuite(import.meta.url);

function client(proxy) {
  return new OpenAI({ apiKey: API_KEY, baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: TIMEOUT_MS });
}

const messages = [{ role: 'user', content: 'Say hello' }];

describe('openai chat completions', () => {
  test('a completion reaches the upstream unchanged and comes back', options, async () => {
    const proxy = await suite.createProxy('openai');
    const { data, response } = await client(proxy).chat.completions.create({ model: MODEL, messages }).withResponse();

    assert.equal(data.choices[0].message.content, ANSWER);
    assert.equal(data.usage.prompt_tokens, INPUT_TOKENS);
    assert.equal(response.headers.get('x-cache'), 'MISS');
    const recorded = await suite.mock.only();
    assert.equal(recorded.method, 'POST');
    assert.equal(recorded.raw_path, '/v1/chat/completions');
    assert.equal(recorded.header('authorization'), `Bearer ${API_KEY}`);
    assert.deepEqual(recorded.json(), { model: MODEL, messages });
  });

  test('a stream arrives chunk by chunk', options, async () => {
    const proxy = await suite.createProxy('openai');
    const stream = await client(proxy).chat.completions.create({
      model: MODEL,
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);

    const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '');
    assert.deepEqual(text.filter(Boolean), ANSWER_CHUNKS);
    assert.equal(chunks.at(-1).usage.completion_tokens, OUTPUT_TOKENS);
    const recorded = await suite.mock.only('/chat/completions');
    assert.equal(recorded.json().stream, true);
  });

  test('the repeat of a completion is a cache HIT that never reaches the upstream', options, async () => {
    const proxy = await suite.createProxy('openai');
    const openai = client(proxy);
    const [first, second] = await proxy.repeatIsHit(() => withCacheHeader(openai.chat.completions.create({ model: MODEL, messages })));

    assert.deepEqual(second.data, first.data);
  });

  test('the repeat of a stream is replayed from the cache as a stream', options, async () => {
    const proxy = await suite.createProxy('openai');
    const openai = client(proxy);
    const streamed = async () => {
      const { data, response } = await openai.chat.completions.create({ model: MODEL, messages, stream: true }).withResponse();
      const chunks = await collect(data);
      return { cache: response.headers.get('x-cache'), text: chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('') };
    };
    const [first, second] = await proxy.repeatIsHit(streamed);

    assert.deepEqual(first, { cache: 'MISS', text: ANSWER });
    assert.deepEqual(second, { cache: 'HIT', text: ANSWER });
  });

  test('an injected 429 raises the SDK RateLimitError', options, async () => {
    const proxy = await suite.createProxy('openai');
    await proxy.injectRateLimit();
    const error = await rejection(
      () => client(proxy).chat.completions.create({ model: MODEL, messages }),
      (e) => e instanceof OpenAI.RateLimitError,
      'chat.completions.create',
    );

    assert.equal(error.status, 429);
    assert.equal(typeof error.error?.message, 'string', 'the body has the OpenAI error shape');
    assert.ok(error.headers.get('retry-after'), 'a Retry-After header');
    assert.equal((await suite.mock.requests()).length, 0, 'the failure was injected, not the upstream');
  });
});

describe('openai responses and embeddings', () => {
  test('responses.create returns the output text, and its repeat is a HIT', options, async () => {
    const proxy = await suite.createProxy('openai');
    const openai = client(proxy);
    const [first, second] = await proxy.repeatIsHit(() => withCacheHeader(openai.responses.create({ model: MODEL, input: 'Say hello' })));

    assert.equal(first.data.output_text, ANSWER);
    assert.equal(second.data.output_text, ANSWER);
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, '/v1/responses');
    assert.deepEqual(recorded.json(), { model: MODEL, input: 'Say hello' });
  });

  test('a streamed response delivers its text deltas', options, async () => {
    const proxy = await suite.createProxy('openai');
    const stream = await client(proxy).responses.create({ model: MODEL, input: 'Say hello', stream: true });
    const events = await collect(stream);

    const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta);
    assert.deepEqual(deltas, ANSWER_CHUNKS);
    assert.equal(events.at(-1).type, 'response.completed');
    assert.equal((await suite.mock.only('/v1/responses')).json().stream, true);
  });

  test('embeddings arrive decoded (the SDK asks for base64), and their repeat is a HIT', options, async () => {
    const proxy = await suite.createProxy('openai');
    const openai = client(proxy);
    const request = { model: 'text-embedding-3-small', input: 'hello' };
    const [first, second] = await proxy.repeatIsHit(() => withCacheHeader(openai.embeddings.create(request)));

    assert.deepEqual(first.data.data[0].embedding, EMBEDDING);
    assert.deepEqual(second.data.data[0].embedding, EMBEDDING);
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, '/v1/embeddings');
    assert.equal(recorded.json().encoding_format, 'base64');
  });
});
