// LangChain JS (`@langchain/openai` ChatOpenAI, which calls the `openai` npm package) against an
// openai proxy, with only configuration.baseURL changed: invoke, stream, the cache, and an
// injected 429 (LangChain rethrows the openai SDK's RateLimitError, stamped with its
// MODEL_RATE_LIMIT error code).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AIMessage, AIMessageChunk } from '@langchain/core/messages';
import { ChatOpenAI } from '@langchain/openai';
import OpenAI from 'openai';

import { ANSWER, ANSWER_CHUNKS, INPUT_TOKENS, OUTPUT_TOKENS, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite, within } from './harness.mjs';

const API_KEY = 'sk-js-langchain';
const MODEL = 'gpt-4o-mini';
const PROMPT = 'Say hello';
const options = { timeout: TEST_TIMEOUT_MS };

const suite = useSuite(import.meta.url);

function chat(proxy) {
  return new ChatOpenAI({ model: MODEL, apiKey: API_KEY, configuration: { baseURL: `${proxy.url}/v1` }, maxRetries: 0, timeout: TIMEOUT_MS });
}

/** The text of a streamed answer, chunk by chunk (LangChain adds empty chunks for the role,
 * the finish reason and the usage). */
async function streamedText(model) {
  const chunks = await collect(await model.stream(PROMPT));
  assert.ok(chunks.every((chunk) => chunk instanceof AIMessageChunk));
  return { chunks, text: chunks.map((chunk) => chunk.content).filter(Boolean) };
}

test('invoke returns an AIMessage with the answer and the usage', options, async () => {
  const proxy = await suite.createProxy('openai');
  const message = await within(chat(proxy).invoke(PROMPT), 'invoke');

  assert.ok(message instanceof AIMessage);
  assert.equal(message.content, ANSWER);
  assert.equal(message.usage_metadata.input_tokens, INPUT_TOKENS);
  assert.equal(message.usage_metadata.output_tokens, OUTPUT_TOKENS);
  assert.equal(message.response_metadata.finish_reason, 'stop');
  const recorded = await suite.mock.only();
  assert.equal(recorded.raw_path, '/v1/chat/completions');
  assert.equal(recorded.header('authorization'), `Bearer ${API_KEY}`);
  assert.match(recorded.header('user-agent') ?? '', /langchainjs-openai/);
  assert.deepEqual(recorded.json(), { model: MODEL, stream: false, messages: [{ role: 'user', content: PROMPT }] });
});

test('stream delivers the answer chunk by chunk, then the usage', options, async () => {
  const proxy = await suite.createProxy('openai');
  const { chunks, text } = await streamedText(chat(proxy));

  assert.deepEqual(text, ANSWER_CHUNKS);
  const usage = chunks.find((chunk) => chunk.usage_metadata?.output_tokens)?.usage_metadata;
  assert.equal(usage?.output_tokens, OUTPUT_TOKENS, 'the usage chunk (stream_options.include_usage)');
  const sent = (await suite.mock.only()).json();
  assert.equal(sent.stream, true);
  assert.deepEqual(sent.stream_options, { include_usage: true });
});

test('the repeat of invoke is a cache HIT, and so is the repeat of stream', options, async () => {
  const proxy = await suite.createProxy('openai');
  const model = chat(proxy);

  // ChatOpenAI gives no access to the response headers: the cache's counters tell the HIT.
  const [first, second] = await proxy.repeatIsHit(async () => ({ message: await within(model.invoke(PROMPT), 'invoke') }), { headers: false });
  assert.equal(second.message.content, ANSWER);
  assert.deepEqual(second.message.usage_metadata, first.message.usage_metadata);
  const [, replayed] = await proxy.repeatIsHit(() => streamedText(model), { headers: false });
  assert.deepEqual(replayed.text, ANSWER_CHUNKS);

  // The proxy's log says which of them the cache served.
  const logged = await proxy.logs({ atLeast: 4 });
  assert.deepEqual(
    logged.map((entry) => [entry.cache, entry.stream]).reverse(),
    [['miss', false], ['hit', false], ['miss', true], ['hit', true]],
    JSON.stringify(logged[0]),
  );
});

test('an injected 429 raises the openai RateLimitError, with LangChain MODEL_RATE_LIMIT', options, async () => {
  const proxy = await suite.createProxy('openai');
  await proxy.injectRateLimit();
  const error = await rejection(() => within(chat(proxy).invoke(PROMPT), 'invoke'), (e) => e instanceof OpenAI.RateLimitError, 'invoke');

  assert.equal(error.status, 429);
  assert.equal(error.lc_error_code, 'MODEL_RATE_LIMIT');
  assert.ok(error.headers.get('retry-after'), 'a Retry-After header');
  assert.equal((await suite.mock.requests()).length, 0, 'the failure was injected, not the upstream');
});
