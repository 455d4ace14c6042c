// Fixtures of the JavaScript conformance suite: the recording mock upstream (tests/sdk/mock_upstream.py
// run as a program), the real `rubberduck` binary with a temporary data directory, and proxies.
//
// Run from tests/js:  node --test
// Environment:
//   RUBBERDUCK_BIN   the binary to start (default <repo>/target/debug/rubberduck)
//   JS_PROXY_PORTS   FIRST-LAST proxy ports for the whole run; every test file takes its own slice
//
// Every test file is its own process (node --test), so each starts its own mock and rubberduck:
//   const suite = useSuite(import.meta.url);   // started before the file's tests, stopped after

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach } from 'node:test';
import { fileURLToPath } from 'node:url';

// Any host name other than localhost fails loudly instead of being looked up.
import { OFFLINE_MODULE } from './offline.mjs';

export const JS_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(JS_DIR, '..', '..');

// What the mock answers (tests/sdk/mock_upstream.py).
export const ANSWER = 'Hello from the mock upstream.';
export const ANSWER_CHUNKS = ['Hello', ' from', ' the', ' mock', ' upstream.'];
export const INPUT_TOKENS = 11;
export const OUTPUT_TOKENS = 7;
export const EMBEDDING = [0.25, -0.5, 0.125];
/** The access token the mock's /token endpoint mints (for any grant it is sent). */
export const MINTED_TOKEN = 'ya29.test-token';
// What the external_account credentials of `suite.googleCredentialsFile()` exchange at /token.
export const GOOGLE_AUDIENCE = 'mock-audience';
export const GOOGLE_SUBJECT_TOKEN = 'js-suite-subject-token';
export const GOOGLE_SUBJECT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

// Credentials of the rubberduck process itself (Bedrock re-signing falls back to them).
export const PROXY_AWS_ACCESS_KEY = 'AKIDTEST';
export const PROXY_AWS_SECRET_KEY = 'test-secret';
const BOOTSTRAP_TOKEN = 'js-suite-bootstrap-token';

/** Bound on anything a test awaits that could hang (a process start, an HTTP call). */
export const TIMEOUT_MS = 20_000;
/** Bound on one whole test. */
export const TEST_TIMEOUT_MS = 60_000;

// --- no request leaves 127.0.0.1 ----------------------------------------------------------------

// Local calls must never go through a proxy from the environment.
for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) {
  delete process.env[name];
}
process.env.NO_PROXY = process.env.no_proxy = '127.0.0.1,localhost';

/** Environment that keeps the AWS and Google SDKs from looking for credentials or metadata servers
 * on the network or in the home directory. */
export const ISOLATED_ENV = {
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  METADATA_SERVER_DETECTION: 'none',
  // Port 9 on loopback: refused at once, should anything still ask the metadata server.
  GCE_METADATA_HOST: '127.0.0.1:9',
  GCE_METADATA_IP: '127.0.0.1:9',
  CLOUDSDK_CONFIG: fs.mkdtempSync(path.join(os.tmpdir(), 'rubberduck-js-gcloud-')),
};
// Read before the scrub below, which would drop it with the other RUBBERDUCK_ variables.
const BINARY_FROM_ENV = process.env.RUBBERDUCK_BIN;
for (const name of Object.keys(process.env)) {
  if (name.startsWith('AWS_') || name.startsWith('GOOGLE_') || name.startsWith('RUBBERDUCK_')) {
    delete process.env[name];
  }
}
Object.assign(process.env, ISOLATED_ENV);

/** Preload (`node --import <this> program.mjs`) that keeps a program the suite runs on 127.0.0.1. */
export { OFFLINE_MODULE };


// --- child processes ----------------------------------------------------------------------------

const children = new Set();
function killChildren() {
  for (const child of children) child.kill('SIGKILL');
}
process.on('exit', () => {
  killChildren();
  fs.rmSync(ISOLATED_ENV.CLOUDSDK_CONFIG, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killChildren();
    process.exit(128 + os.constants.signals[signal]);
  });
}

/** Resolves with the first line of `stream` matching `pattern`'s capture group; rejects on timeout
 * or when the process exits first. Keeps every line in `log`. */
function waitForLine(child, stream, pattern, log, what) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let found = false;
    const timer = setTimeout(() => {
      reject(new Error(`${what} did not start within ${TIMEOUT_MS} ms:\n${log.slice(-40).join('\n')}`));
    }, TIMEOUT_MS);
    stream.setEncoding('utf8');
    stream.on('data', (data) => {
      buffered += data;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        log.push(line);
        const match = !found && pattern.exec(line);
        if (match) {
          found = true;
          clearTimeout(timer);
          resolve(match[1]);
        }
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`${what} exited (${code ?? signal}) before it was ready:\n${log.slice(-40).join('\n')}`));
    });
  });
}

function stopChild(child, signal, waitMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, waitMs);
    child.once('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve();
    });
    child.kill(signal);
  });
}

// --- HTTP ---------------------------------------------------------------------------------------

async function fetchJson(url, { method = 'GET', body, headers = {} } = {}) {
  const response = await fetch(url, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: response.status, body: json, headers: response.headers };
}

/** The mock upstream, run as a program; its recording read over HTTP. */
class Mock {
  constructor(child, url) {
    this.child = child;
    this.url = url;
  }

  /** Every request the mock received since the last clear: {method, raw_path, path, headers, body, json(), header(name)}. */
  async requests(pathContains) {
    const { status, body } = await fetchJson(`${this.url}/__mock/requests`);
    assert.equal(status, 200, 'the mock lists its recording');
    return body
      .map((recorded) => ({
        ...recorded,
        path: recorded.raw_path.split('?')[0],
        header(name) {
          const found = recorded.headers.find(([key]) => key.toLowerCase() === name.toLowerCase());
          return found ? found[1] : undefined;
        },
        json() {
          return JSON.parse(recorded.body);
        },
      }))
      .filter((recorded) => pathContains === undefined || recorded.raw_path.includes(pathContains));
  }

  /** The single request received (whose path contains the text); fails otherwise. */
  async only(pathContains) {
    const found = await this.requests(pathContains);
    assert.equal(
      found.length,
      1,
      `expected one request${pathContains ? ` to ${pathContains}` : ''}, got ${JSON.stringify((await this.requests()).map((r) => `${r.method} ${r.raw_path}`))}`,
    );
    return found[0];
  }

  async clear() {
    const { status } = await fetchJson(`${this.url}/__mock/requests`, { method: 'DELETE' });
    assert.equal(status, 200, 'the mock clears its recording');
  }
}

/** A proxy of the running rubberduck: `url` is where an SDK points. */
class Proxy {
  constructor(suite, info) {
    this.suite = suite;
    this.info = info;
    this.id = info.id;
    this.url = info.url.replace(/\/$/, '');
  }

  /** Replaces the proxy's failure config (fields left out take their defaults). */
  async setFailures(config) {
    const { status, body } = await this.suite.api('PUT', `/api/proxies/${this.id}/failure-config`, config);
    assert.equal(status, 200, `PUT failure-config: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  /** Every request fails with an injected 429 (before the cache and the upstream). */
  injectRateLimit() {
    return this.setFailures({ errors: { enabled: true, rates: { 429: 1.0 } } });
  }

  /** `{entries, bytes, hits, misses}` of the proxy's cache. */
  async cache() {
    const { status, body } = await this.suite.api('GET', `/api/proxies/${this.id}/cache`);
    assert.equal(status, 200, `GET cache: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  /**
   * Makes the same call twice and asserts the cache's contract for it: the first answer is a MISS
   * that reached the upstream, the repeat a HIT that did not. The mock records exactly one new
   * request (counting only paths containing `upstreamPath`, when given: a client's own calls to
   * the mock, like a token exchange, are not the proxy's), and the proxy's cache counts one miss
   * for the first call and one hit for the second.
   *
   * `call()` resolves with `{ cache, ... }`, `cache` being the `x-cache` header as the SDK exposes
   * it; an SDK that exposes no response headers passes `{ headers: false }` and leaves `cache`
   * out (the counters still tell a HIT from a MISS). Resolves with both answers.
   */
  async repeatIsHit(call, { upstreamPath, headers = true } = {}) {
    const counts = async () => {
      const { hits, misses } = await this.cache();
      return { requests: (await this.suite.mock.requests(upstreamPath)).length, hits, misses };
    };
    const before = await counts();
    const first = await call();
    const afterFirst = await counts();
    const second = await call();
    const afterSecond = await counts();

    const delta = (later, earlier) => ({
      requests: later.requests - earlier.requests,
      hits: later.hits - earlier.hits,
      misses: later.misses - earlier.misses,
    });
    assert.deepEqual(delta(afterFirst, before), { requests: 1, hits: 0, misses: 1 }, 'the first call is a MISS that reaches the upstream');
    assert.deepEqual(delta(afterSecond, afterFirst), { requests: 0, hits: 1, misses: 0 }, 'the repeat is a HIT that does not');
    if (headers) {
      assert.equal(first.cache, 'MISS', 'x-cache of the first answer');
      assert.equal(second.cache, 'HIT', 'x-cache of the repeat');
    } else {
      assert.equal(first.cache, undefined, 'an SDK without headers passes no x-cache');
    }
    return [first, second];
  }

  /** The proxy's request log, newest first. The log is written in the background: with
   * `atLeast`, waits (up to TIMEOUT_MS) until it holds that many entries. */
  async logs({ atLeast = 0 } = {}) {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      const { status, body } = await this.suite.api('GET', `/api/logs?proxy_id=${this.id}&limit=100`);
      assert.equal(status, 200, `GET logs: ${status} ${JSON.stringify(body)}`);
      if (body.logs.length >= atLeast || Date.now() > deadline) return body.logs;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

let proxyNames = 0;

/** Ports fetch() refuses to connect to ("bad port", the Fetch standard's port blocking list),
 * from 1024 up: the SDKs built on fetch could never reach a proxy there. */
const FETCH_BLOCKED_PORTS = new Set([1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080]);

class Suite {
  /** Empty until `start` (so `useSuite` can hand it out before the file's `before` hook runs). */
  constructor() {
    this.mock = null;
    this.rubberduck = null;
    this.dashboard = null;
    this.log = [];
    this.tempDirs = [];
    /** Proxy ports not handed out yet. */
    this.freePorts = [];
  }

  api(method, apiPath, body) {
    return fetchJson(`${this.dashboard}${apiPath}`, {
      method,
      body,
      headers: { authorization: `Bearer ${BOOTSTRAP_TOKEN}` },
    });
  }

  /** A running proxy of `provider` whose upstream is the mock (with /v1 for the OpenAI-style
   * providers, whose upstream bases carry the version). Its cache is on (the default). */
  async createProxy(provider, fields = {}) {
    const body = {
      name: `js-${provider}-${++proxyNames}`,
      provider,
      upstream_url: this.mock.url + (provider === 'openai' || provider === 'deepseek' ? '/v1' : ''),
      port: this.freePorts.shift(),
      ...fields,
    };
    assert.ok(body.port, 'the test file has proxy ports left');
    const { status, body: proxy } = await this.api('POST', '/api/proxies', body);
    assert.equal(status, 201, `creating a ${provider} proxy: ${status} ${JSON.stringify(proxy)}`);
    assert.equal(proxy.status, 'running', JSON.stringify(proxy));
    assert.equal(proxy.cache.enabled, true, JSON.stringify(proxy));
    return new Proxy(this, proxy);
  }

  /** A fresh directory removed when the suite stops. `parent` defaults to the system's. */
  tempDir(prefix = 'rubberduck-js-', parent = os.tmpdir()) {
    const dir = fs.mkdtempSync(path.join(parent, prefix));
    this.tempDirs.push(dir);
    return dir;
  }

  /** Google Application Default Credentials of type `external_account` (workload identity
   * federation, no service-account impersonation): the subject token is read from a file and
   * exchanged at the mock's /token (an RFC 8693 token exchange), which answers MINTED_TOKEN.
   * google-auth-library for Node honours `token_url` (it ignores a service-account key's
   * `token_uri`, so that kind of file cannot be pointed at the mock). Returns the file's path;
   * written once per suite. */
  googleCredentialsFile() {
    if (!this.googleCredentials) {
      const dir = this.tempDir('rubberduck-js-google-');
      const subjectTokenFile = path.join(dir, 'subject-token');
      fs.writeFileSync(subjectTokenFile, GOOGLE_SUBJECT_TOKEN);
      const file = path.join(dir, 'external-account.json');
      fs.writeFileSync(
        file,
        JSON.stringify({
          type: 'external_account',
          audience: GOOGLE_AUDIENCE,
          subject_token_type: GOOGLE_SUBJECT_TOKEN_TYPE,
          token_url: `${this.mock.url}/token`,
          credential_source: { file: subjectTokenFile },
        }),
      );
      this.googleCredentials = file;
    }
    return this.googleCredentials;
  }

  /** The last lines rubberduck logged, for failure messages. */
  tail(lines = 30) {
    return this.log.slice(-lines).join('\n');
  }

  /** Starts the mock upstream and rubberduck for the test file at `testFileUrl`. */
  async start(testFileUrl) {
    const [first, last] = portSlice(fileURLToPath(testFileUrl));
    for (let port = first; port <= last; port++) {
      if (!FETCH_BLOCKED_PORTS.has(port)) this.freePorts.push(port);
    }
    const binary = BINARY_FROM_ENV || path.join(REPO, 'target', 'debug', 'rubberduck');
    assert.ok(fs.existsSync(binary), `no rubberduck binary at ${binary} (cargo build, or set RUBBERDUCK_BIN)`);

    const mockLog = [];
    const mockChild = spawn('python3', [path.join(REPO, 'tests', 'sdk', 'mock_upstream.py')], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(mockChild);
    mockChild.stderr.setEncoding('utf8').on('data', (data) => mockLog.push(data));
    const mockPort = await waitForLine(mockChild, mockChild.stdout, /^port (\d+)$/, mockLog, 'the mock upstream');
    this.mock = new Mock(mockChild, `http://127.0.0.1:${mockPort}`);

    const dataDir = this.tempDir('rubberduck-js-data-');
    this.rubberduck = spawn(
      binary,
      ['serve', '--bind', '127.0.0.1:0', '--data-dir', dataDir, '--proxy-ports', `${first}-${last}`],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          ...process.env,
          RUST_LOG: 'info',
          AWS_ACCESS_KEY_ID: PROXY_AWS_ACCESS_KEY,
          AWS_SECRET_ACCESS_KEY: PROXY_AWS_SECRET_KEY,
          AWS_REGION: 'us-east-1',
          RUBBERDUCK_BOOTSTRAP_TOKEN: BOOTSTRAP_TOKEN,
          RUBBERDUCK_ADMIN_PASSWORD: 'js-suite-password',
        },
      },
    );
    children.add(this.rubberduck);
    const dashboard = await waitForLine(this.rubberduck, this.rubberduck.stderr, /dashboard on (\S+)/, this.log, 'rubberduck');
    this.dashboard = dashboard.replace(/\/$/, '');
    return this;
  }

  async stop() {
    // The mock exits when its standard input closes.
    this.mock?.child.stdin.end();
    await Promise.all([
      this.rubberduck && stopChild(this.rubberduck, 'SIGTERM', 30_000),
      this.mock && stopChild(this.mock.child, 'SIGTERM', 5_000),
    ]);
    for (const dir of this.tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** This test file's slice of the run's proxy ports: every file gets an equal, disjoint share. */
function portSlice(testFile) {
  let configured = process.env.JS_PROXY_PORTS;
  if (!configured) {
    // Standalone runs (`node --test` by hand): a block keyed by the runner's pid, shared by
    // every file of the run because they are all its children.
    const first = 30_000 + (process.ppid % 40) * 250;
    configured = `${first}-${first + 249}`;
  }
  const [first, last] = configured.split('-').map(Number);
  const files = fs
    .readdirSync(JS_DIR)
    .filter((name) => name.endsWith('.test.mjs'))
    .sort();
  const index = files.indexOf(path.basename(testFile));
  assert.ok(index >= 0, `${testFile} is not a test file of ${JS_DIR}`);
  const size = Math.floor((last - first + 1) / files.length);
  assert.ok(size >= 10, `JS_PROXY_PORTS ${configured} is too small for ${files.length} test files`);
  return [first + index * size, first + (index + 1) * size - 1];
}

/** The suite of one test file (pass its `import.meta.url`), run by the file's hooks: started
 * before its first test, stopped after its last, and the mock's recording cleared before each
 * test. The object is returned at once and filled in when the `before` hook has run. */
export function useSuite(testFileUrl) {
  const suite = new Suite();
  before(() => suite.start(testFileUrl));
  // Also runs when `before` failed; stop() copes with a half-started suite.
  after(() => suite.stop());
  beforeEach(() => suite.mock.clear());
  return suite;
}

/** Awaits a call of a Stainless-generated SDK (openai, @anthropic-ai/sdk) with its response:
 * `{ cache, data }`, `cache` being the `x-cache` header (the shape `proxy.repeatIsHit` takes). */
export async function withCacheHeader(apiPromise) {
  const { data, response } = await apiPromise.withResponse();
  return { cache: response.headers.get('x-cache'), data };
}

/** Resolves `promise`, or rejects after `ms` naming `what` (for awaits without their own timeout). */
export function within(promise, what, ms = TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Collects an async iterable (a stream of an SDK) into an array, bounded in time. */
export function collect(iterable, what = 'the stream') {
  return within(
    (async () => {
      const items = [];
      for await (const item of iterable) items.push(item);
      return items;
    })(),
    what,
  );
}

/** Asserts that `run` rejects with an error accepted by `check`, returning the error. */
export async function rejection(run, check, what) {
  try {
    await run();
  } catch (error) {
    assert.ok(check(error), `${what}: unexpected error ${error?.constructor?.name}: ${error?.message}`);
    return error;
  }
  assert.fail(`${what}: the call succeeded`);
}
