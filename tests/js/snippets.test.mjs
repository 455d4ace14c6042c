// The TypeScript snippet every proxy's card shows (and README.md prints), run exactly as
// `GET /api/proxies/{id}/snippets` serves it: written as an .mjs file inside tests/js (so its
// imports resolve to tests/js/node_modules) and run with `node`, against a fresh proxy of each
// provider in front of the recording mock. (tests/sdk/test_snippets.py runs the Python and curl
// ones.)
//
// Each program gets only the environment variables its SDK reads for its provider, every proxy
// variable points at a closed local port, and offline.mjs is preloaded so that any host name but
// localhost fails: a program that reaches anywhere but 127.0.0.1 fails.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { ANSWER, ISOLATED_ENV, JS_DIR, MINTED_TOKEN, OFFLINE_MODULE, PROXY_AWS_ACCESS_KEY, TEST_TIMEOUT_MS, TIMEOUT_MS, useSuite } from './harness.mjs';

const REGION = 'eu-west-3';
const VERTEX_MODEL_PATH = '/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent';
const options = { timeout: TEST_TIMEOUT_MS };

const suite = useSuite(import.meta.url);

/** Per provider: the environment its snippet reads, and the request the mock must receive (path
 * and query as on the wire) with the credential the program took from that environment (null
 * where the proxy replaces it: Bedrock re-signs). */
const CASES = {
  openai: {
    env: () => ({ OPENAI_API_KEY: 'sk-snippet-openai' }),
    path: '/v1/chat/completions',
    key: 'sk-snippet-openai',
  },
  anthropic: {
    env: () => ({ ANTHROPIC_API_KEY: 'sk-ant-snippet' }),
    path: '/v1/messages',
    key: 'sk-ant-snippet',
  },
  azure_openai: {
    env: () => ({ AZURE_OPENAI_API_KEY: 'azure-snippet-key' }),
    path: '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21',
    key: 'azure-snippet-key',
  },
  bedrock: {
    env: () => ({
      AWS_ACCESS_KEY_ID: 'AKIDSNIPPET',
      AWS_SECRET_ACCESS_KEY: 'snippet-secret',
      AWS_REGION: REGION,
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
    path: `/model/${encodeURIComponent('anthropic.claude-3-haiku-20240307-v1:0')}/converse`,
    key: null,
  },
  vertex_ai: {
    // Application Default Credentials, as the snippet expects: an external_account file whose
    // token exchange goes to the mock's /token.
    env: () => ({ GOOGLE_APPLICATION_CREDENTIALS: suite.googleCredentialsFile() }),
    path: `/v1beta1${VERTEX_MODEL_PATH}`,
    key: MINTED_TOKEN,
  },
  deepseek: {
    env: () => ({ DEEPSEEK_API_KEY: 'sk-snippet-deepseek' }),
    path: '/v1/chat/completions',
    key: 'sk-snippet-deepseek',
  },
};

function programEnv(provider, home) {
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
    // Metadata servers and the gcloud configuration are out of reach (the harness's isolation).
    ...ISOLATED_ENV,
    ...CASES[provider].env(),
  };
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) {
    env[name] = 'http://127.0.0.1:9';
  }
  return env;
}

/** Runs `program` as an .mjs module inside tests/js; resolves with {code, stdout, stderr}. */
function runProgram(program, env) {
  const dir = fs.mkdtempSync(path.join(JS_DIR, '.snippet-'));
  const file = path.join(dir, 'snippet.mjs');
  fs.writeFileSync(file, `${program}\n`);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', OFFLINE_MODULE, file],
      { cwd: dir, env, timeout: TIMEOUT_MS, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        fs.rmSync(dir, { recursive: true, force: true });
        resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr });
      },
    );
  });
}

function credentialsSent(recorded) {
  return ['authorization', 'x-api-key', 'api-key']
    .map((name) => recorded.header(name))
    .filter(Boolean)
    .map((value) => value.replace(/^Bearer /, ''));
}

for (const provider of Object.keys(CASES)) {
  test(`the ${provider} TypeScript snippet runs as served, through the proxy`, options, async () => {
    const proxy = await suite.createProxy(provider);
    const { status, body: snippets } = await suite.api('GET', `/api/proxies/${proxy.id}/snippets`);
    assert.equal(status, 200, JSON.stringify(snippets));
    assert.deepEqual(Object.keys(snippets).sort(), ['curl', 'python', 'typescript']);
    const program = snippets.typescript;
    assert.ok(program.includes(proxy.url), program);

    const home = suite.tempDir('rubberduck-js-snippet-home-');
    const result = await runProgram(program, programEnv(provider, home));

    const context = `--- program:\n${program}\n--- stdout:\n${result.stdout}\n--- stderr:\n${result.stderr}`;
    assert.equal(result.code, 0, `the snippet failed (exit ${result.code})\n${context}`);
    assert.equal(result.stdout, `${ANSWER}\n`, context);

    // The client's own token exchange (Vertex) goes to the key file's token_url, not the proxy.
    const received = (await suite.mock.requests()).filter((r) => r.path !== '/token');
    assert.equal(received.length, 1, JSON.stringify(received.map((r) => `${r.method} ${r.raw_path}`)));
    const [recorded] = received;
    const { path: expectedPath, key } = CASES[provider];
    assert.equal(recorded.method, 'POST');
    assert.equal(recorded.raw_path, expectedPath);
    if (key !== null) assert.ok(credentialsSent(recorded).includes(key), JSON.stringify(recorded.headers));
    if (provider === 'bedrock') {
      // Re-signed by the proxy with its own identity, for the region the program signed for.
      const scope = /Credential=([^/]+)\/\d{8}\/([^/]+)\/bedrock\//.exec(recorded.header('authorization') ?? '');
      assert.deepEqual(scope?.slice(1), [PROXY_AWS_ACCESS_KEY, REGION], recorded.header('authorization'));
    }
    if (provider === 'vertex_ai') {
      assert.equal((await suite.mock.requests('/token')).length, 1, 'Application Default Credentials exchanged a token');
    }

    const [entry, ...more] = await proxy.logs({ atLeast: 1 });
    assert.equal(more.length, 0);
    assert.equal(entry.status, 200);
    assert.equal(decodeURIComponent(entry.path), decodeURIComponent(expectedPath.split('?')[0]));
  });
}
