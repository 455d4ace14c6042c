// The Vercel AI SDK (`ai` with the `@ai-sdk/openai` provider) against an openai proxy, with only
// baseURL changed: generateText and streamText on Chat Completions (`openai.chat(model)`) and on
// the Responses API (`openai(model)`, the provider's default), the cache, and an injected 429
// raising APICallError.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, generateText, streamText } from 'ai';

import { ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, TEST_TIMEOUT_MS, collect, rejection, useSuite, within } from './harness.mjs';

const API_KEY = 'sk-js-vercel-ai';
const MODEL = 'gpt-4o-mini';
const PROMPT = 'Say hello';
const options = { timeout: TEST_TIMEOUT_MS };

const suite = useSuite(import.meta.url);

function provider(proxy) {
  return createOpenAI({ baseURL: `${proxy.url}/v1`, apiKey: API_KEY });
}

// maxRetries 0: the SDK would otherwise retry a 429 and throw a RetryError around it.
async function generated(model) {
  const result = await within(generateText({ model, prompt: PROMPT, maxRetries: 0 }), 'generateText');
  return { cache: result.response.headers?.['x-cache'], result };
}

async function streamed(model) {
  const errors = [];
  const result = streamText({ model, prompt: PROMPT, maxRetries: 0, onError: ({ error }) => errors.push(error) });
  const chunks = await collect(result.textStream, 'textStream');
  assert.deepEqual(errors, [], 'streamText reported no error');
  const response = await within(result.response, 'the response');
  return { cache: response.headers?.['x-cache'], chunks, usage: await within(result.usage, 'the usage') };
}

describe('Chat Completions (openai.chat)', () => {
  test('generateText returns the text and the usage', options, async () => {
    const proxy = await suite.createProxy('openai');
    const { cache, result } = await generated(provider(proxy).chat(MODEL));

    assert.equal(result.text, ANSWER);
    assert.equal(result.finishReason, 'stop');
    assert.equal(result.usage.inputTokens, INPUT_TOKENS);
    assert.equal(result.usage.outputTokens, OUTPUT_TOKENS);
    assert.equal(cache, 'MISS');
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, '/v1/chat/completions');
    assert.equal(recorded.header('authorization'), `Bearer ${API_KEY}`);
    assert.equal(recorded.json().model, MODEL);
    assert.deepEqual(recorded.json().messages, [{ role: 'user', content: PROMPT }]);
  });

  test('streamText delivers the text chunk by chunk', options, async () => {
    const proxy = await suite.createProxy('openai');
    const { cache, chunks, usage } = await streamed(provider(proxy).chat(MODEL));

    assert.deepEqual(chunks, ANSWER_CHUNKS);
    assert.equal(usage.outputTokens, OUTPUT_TOKENS, 'the usage of the last chunk (stream_options.include_usage)');
    assert.equal(cache, 'MISS');
    const sent = (await suite.mock.only('/v1/chat/completions')).json();
    assert.equal(sent.stream, true);
    assert.deepEqual(sent.stream_options, { include_usage: true });
  });

  test('the repeat of generateText is a cache HIT, and so is the repeat of streamText', options, async () => {
    const proxy = await suite.createProxy('openai');
    const model = provider(proxy).chat(MODEL);

    const [first, second] = await proxy.repeatIsHit(() => generated(model));
    assert.equal(second.result.text, ANSWER);
    assert.deepEqual(second.result.usage, first.result.usage);
    const [, replayed] = await proxy.repeatIsHit(() => streamed(model));
    assert.deepEqual(replayed.chunks, ANSWER_CHUNKS);
  });

  test('an injected 429 raises APICallError with statusCode 429', options, async () => {
    const proxy = await suite.createProxy('openai');
    await proxy.injectRateLimit();
    const error = await rejection(() => generated(provider(proxy).chat(MODEL)), (e) => APICallError.isInstance(e), 'generateText');

    assert.ok(error instanceof APICallError);
    assert.equal(error.statusCode, 429);
    assert.equal(error.isRetryable, true);
    assert.ok(error.responseHeaders?.['retry-after'], 'a Retry-After header');
    assert.equal(typeof JSON.parse(error.responseBody).error.message, 'string', 'the body has the OpenAI error shape');
    assert.equal((await suite.mock.requests()).length, 0, 'the failure was injected, not the upstream');
  });

  test('an injected 429 during streamText arrives as an APICallError error part', options, async () => {
    const proxy = await suite.createProxy('openai');
    await proxy.injectRateLimit();
    const result = streamText({ model: provider(proxy).chat(MODEL), prompt: PROMPT, maxRetries: 0, onError: () => {} });
    const parts = await collect(result.fullStream, 'fullStream');

    const errors = parts.filter((part) => part.type === 'error').map((part) => part.error);
    assert.equal(errors.length, 1, JSON.stringify(parts.map((part) => part.type)));
    assert.ok(APICallError.isInstance(errors[0]), `an APICallError: ${errors[0]}`);
    assert.equal(errors[0].statusCode, 429);
    assert.equal(parts.filter((part) => part.type === 'text-delta').length, 0);
    assert.equal((await suite.mock.requests()).length, 0);
  });
});

describe('Responses API (openai(model), the default)', () => {
  test('generateText goes to /v1/responses, and its repeat is a cache HIT', options, async () => {
    const proxy = await suite.createProxy('openai');
    const model = provider(proxy)(MODEL);

    const [first, second] = await proxy.repeatIsHit(() => generated(model));
    for (const { result } of [first, second]) {
      assert.equal(result.text, ANSWER);
      assert.equal(result.usage.inputTokens, INPUT_TOKENS);
      assert.equal(result.usage.outputTokens, OUTPUT_TOKENS);
    }
    const recorded = await suite.mock.only();
    assert.equal(recorded.raw_path, '/v1/responses');
    assert.equal(recorded.header('authorization'), `Bearer ${API_KEY}`);
    assert.equal(recorded.json().model, MODEL);
  });

  test('streamText delivers the text chunk by chunk, and its repeat is a cache HIT', options, async () => {
    const proxy = await suite.createProxy('openai');
    const model = provider(proxy)(MODEL);

    const [first, second] = await proxy.repeatIsHit(() => streamed(model));
    for (const { chunks, usage } of [first, second]) {
      assert.deepEqual(chunks, ANSWER_CHUNKS);
      assert.equal(usage.inputTokens, INPUT_TOKENS);
      assert.equal(usage.outputTokens, OUTPUT_TOKENS);
    }
    const sent = (await suite.mock.only('/v1/responses')).json();
    assert.equal(sent.stream, true);
  });

  test('an injected 429 raises APICallError with statusCode 429', options, async () => {
    const proxy = await suite.createProxy('openai');
    await proxy.injectRateLimit();
    const error = await rejection(() => generated(provider(proxy)(MODEL)), (e) => APICallError.isInstance(e), 'generateText');

    assert.equal(error.statusCode, 429);
    assert.equal(error.url, `${proxy.url}/v1/responses`);
    assert.equal((await suite.mock.requests()).length, 0);
  });
});
