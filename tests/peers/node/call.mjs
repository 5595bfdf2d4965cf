#!/usr/bin/env node
// SIP.js over WS/WSS from Node 20: N sequential calls through a proxy.
// Prints one JSON line on stdout; progress goes to stderr. Exit 0 only when
// every call was established and ended as expected (see README.md).

import { readFileSync, writeSync } from "node:fs";
import { USAGE_COMMON, emptyResult, parseArgs } from "./args.mjs";
import { useNodeWebSocket } from "./node-ws.mjs";

const log = (msg) => process.stderr.write(`call.mjs: ${msg}\n`);

function finish(result, code) {
  writeSync(1, JSON.stringify(result) + "\n"); // synchronous: nothing is lost on exit
  process.exit(code);
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`usage: node call.mjs ${USAGE_COMMON}\n`);
  if (e.message === "help") process.exit(0);
  process.stderr.write(`call.mjs: ${e.message}\n`);
  process.exit(2);
}

// --ca is the only trust anchor for wss:// (see node-ws.mjs).
let ca;
if (opts.ca) {
  try {
    ca = readFileSync(opts.ca);
  } catch (e) {
    finish(emptyResult(opts.calls, `cannot read --ca ${opts.ca}: ${e.message}`), 1);
  }
}
const wsErrors = useNodeWebSocket(ca, log);

// Hard stop a little after the run's own deadline, whatever happens.
const hardStop = setTimeout(() => {
  log(`hard timeout after ${opts.timeoutMs + 3000} ms`);
  finish(emptyResult(opts.calls, `timeout (${opts.timeoutMs} ms): no result`), 1);
}, opts.timeoutMs + 3000);
hardStop.unref();

process.on("unhandledRejection", (e) => log(`unhandled rejection: ${e && e.stack ? e.stack : e}`));

const { runCalls } = await import("./core.mjs");
const result = await runCalls({ ...opts, log });
if (!result.ok) result.errors.push(...wsErrors);
finish(result, result.ok ? 0 : 1);
