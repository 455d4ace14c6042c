// Keeps a Node process on 127.0.0.1: any host name other than localhost fails loudly instead of
// being looked up (the SDKs' own defaults would reach api.openai.com, oauth2.googleapis.com,
// metadata.google.internal …). harness.mjs imports it; programs the suite runs as child processes
// (the proxies' snippets) get it with `node --import <OFFLINE_MODULE>`.

import dns from 'node:dns';
import { fileURLToPath } from 'node:url';

/** This module's path, for `node --import`. */
export const OFFLINE_MODULE = fileURLToPath(import.meta.url);

const lookup = dns.lookup;
dns.lookup = function guardedLookup(hostname, ...rest) {
  if (hostname === 'localhost') return lookup.call(this, hostname, ...rest);
  const callback = rest.at(-1);
  process.nextTick(callback, new Error(`the JS suite tried to reach ${hostname}: only 127.0.0.1 is allowed`));
  return undefined;
};
