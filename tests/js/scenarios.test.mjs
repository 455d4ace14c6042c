// The story of scripted failures through the official `openai` npm package: a script of two
// 429s and then a stream cut after three events, run by two tests in parallel against one proxy
// (each under its own X-Rubberduck-Scenario, so each sees the whole script), and the SDK's own
// retries getting through the 429s.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import OpenAI from 'openai';

import { ANSWER, ANSWER_CHUNKS, TEST_TIMEOUT_MS, TIMEOUT_MS, collect, rejection, useSuite, within } from './harness.mjs';

const MODEL = 'gpt-4o-mini';
const messages = [{ role: 'user', content: 'Say hello' }];
const options = { timeout: TEST_TIMEOUT_MS };
const SCRIPT = [{ status: 429, times: 2 }, { stream_disconnect_after: 3 }];

const suite = useSuite(import.meta.url);

/** A proxy without a cache (every request meets the script) running `failures`. */
async function scriptedProxy(failures) {
  const proxy = await suite.createProxy('openai');
  const { status, body } = await suite.api('PATCH', `/api/proxies/${proxy.id}`, { cache: { enabled: false } });
  assert.equal(status, 200, `turning the cache off: ${status} ${JSON.stringify(body)}`);
  assert.equal(body.cache.enabled, false);
  await proxy.setFailures(failures);
  return proxy;
}

function client(proxy, scenario, maxRetries = 0) {
  return new OpenAI({
    apiKey: 'sk-js-scenarios',
    baseURL: `${proxy.url}/v1`,
    maxRetries,
    timeout: TIMEOUT_MS,
    defaultHeaders: { 'X-Rubberduck-Scenario': scenario },
  });
}

/** The content of every chunk a stream yields until it ends or throws, and what it threw. */
async function readStream(stream) {
  const contents = [];
  let error = null;
  await within(
    (async () => {
      try {
        for await (const chunk of stream) contents.push(chunk.choices[0]?.delta?.content ?? null);
      } catch (thrown) {
        error = thrown;
      }
    })(),
    'the stream',
  );
  return { contents, error };
}

/** The proxy's log rows of one scenario, oldest first, once `count` of them are written. */
async function scenarioRows(proxy, scenario, count) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const rows = (await proxy.logs()).filter((row) => row.scenario === scenario);
    if (rows.length >= count || Date.now() > deadline) {
      assert.equal(rows.length, count, `log rows of ${scenario}: ${JSON.stringify(rows.map((r) => r.failure))}`);
      return rows.sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.id - b.id);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One test's run of SCRIPT: 429, 429, a stream cut after three events, then a whole stream. */
async function runTheScript(proxy, scenario) {
  const openai = client(proxy, scenario);
  const create = () => openai.chat.completions.create({ model: MODEL, messages, stream: true });

  for (const call of [1, 2]) {
    const limited = await rejection(create, (e) => e instanceof OpenAI.RateLimitError, `${scenario} call ${call}`);
    assert.equal(limited.status, 429, `${scenario} call ${call}`);
    assert.equal(limited.headers.get('x-rubberduck-injected'), 'error_injection');
  }

  // Three whole events reach the SDK (the role chunk and two pieces of text), then the
  // connection is cut. The SDK does not wrap a failure while reading a stream: what it throws is
  // fetch's (undici's) own error for a body that ended early.
  const { contents, error } = await readStream(await create());
  assert.deepEqual(contents, ['', ...ANSWER_CHUNKS.slice(0, 2)], `${scenario}: what the SDK yielded before the cut`);
  assert.ok(error, `${scenario}: the cut stream must throw, not end`);
  assert.equal(error.constructor, TypeError, `${scenario}: ${error.constructor.name}: ${error.message}`);
  assert.equal(error.message, 'terminated');
  assert.equal(error.cause?.code, 'UND_ERR_SOCKET', `${scenario}: the cause is the socket closing: ${error.cause}`);
  assert.ok(!(error instanceof OpenAI.APIError), 'not one of the SDK errors');

  const whole = await collect(await create(), `${scenario}: the stream after the script`);
  assert.equal(whole.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join(''), ANSWER);
}

test('two tests run the same script in parallel, each under its own scenario, and each sees all of it', options, async () => {
  const proxy = await scriptedProxy({ script: SCRIPT });
  const scenarios = ['story-a', 'story-b'];

  await Promise.all(scenarios.map((scenario) => runTheScript(proxy, scenario)));

  for (const scenario of scenarios) {
    const rows = await scenarioRows(proxy, scenario, 4);
    assert.deepEqual(
      rows.map((row) => [row.status, row.failure]),
      [[429, 'error_injection'], [429, 'error_injection'], [200, 'stream_disconnect'], [200, null]],
      scenario,
    );
  }
  const upstream = await suite.mock.requests('/chat/completions');
  assert.equal(upstream.length, 4, 'the injected 429s never reached the upstream; each test\'s two streams did');
  for (const recorded of upstream) {
    const sent = recorded.headers.map(([name]) => name.toLowerCase()).filter((name) => name.startsWith('x-rubberduck'));
    assert.deepEqual(sent, [], 'the scenario header stays in the proxy');
  }
});

test('with retries on, the SDK gets through the 429s itself: one call, three requests, one upstream', options, async () => {
  const proxy = await scriptedProxy({ script: [{ status: 429, times: 2 }] });
  const scenario = 'retrying';

  const { data, response } = await client(proxy, scenario, 2)
    .chat.completions.create({ model: MODEL, messages })
    .withResponse();

  assert.equal(data.choices[0].message.content, ANSWER);
  assert.equal(response.status, 200);
  const rows = await scenarioRows(proxy, scenario, 3);
  assert.deepEqual(
    rows.map((row) => [row.status, row.failure]),
    [[429, 'error_injection'], [429, 'error_injection'], [200, null]],
    'the proxy saw the SDK try three times',
  );
  assert.equal((await suite.mock.requests('/chat/completions')).length, 1, 'only the one that passed went upstream');
});
