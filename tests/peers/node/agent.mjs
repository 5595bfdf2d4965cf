#!/usr/bin/env node
// A browser-style agent over WS/WSS from Node 20: SIP.js registers an AOR
// (no password), answers N incoming calls, accepts each far end's BYE, then
// unregisters. Prints `REGISTERED` on stderr once the registrar said 200, and
// one JSON line on stdout at the end; exit 0 only when every call was
// answered and hung up by the far end (see README.md).

import { readFileSync, writeSync } from "node:fs";
import { Registerer, RegistererState, SessionState, UserAgent } from "sip.js";
import { parseFlags } from "./args.mjs";
import { useNodeWebSocket } from "./node-ws.mjs";
import { FixedSdpHandler } from "./core.mjs";

const USAGE =
  "--server ws://HOST:PORT|wss://HOST:PORT --aor sip:user@host --answer N " +
  "[--expires S] [--timeout-ms MS] [--ca FILE] [--verbose]";

const start = Date.now();
const log = (msg) => process.stderr.write(`agent.mjs: ${Date.now() - start}ms ${msg}\n`);

const result = {
  registered: false,
  unregistered: false,
  answered: 0,
  byes: 0,
  errors: [],
  contact: "",
  ok: false,
};

function finish(code) {
  writeSync(1, JSON.stringify(result) + "\n"); // synchronous: nothing is lost on exit
  process.exit(code);
}

function parseArgs(argv) {
  const o = parseFlags(
    argv,
    { server: "", aor: "", expires: 60, answer: 1, timeoutMs: 30000, ca: "", verbose: false },
    {
      "--server": ["server", "string"],
      "--aor": ["aor", "string"],
      "--expires": ["expires", "int"],
      "--answer": ["answer", "int"],
      "--timeout-ms": ["timeoutMs", "int"],
      "--ca": ["ca", "string"],
      "--verbose": ["verbose", "flag"],
    },
  );
  if (!/^wss?:\/\//.test(o.server)) throw new Error("--server must be a ws:// or wss:// URL");
  if (!/^sips?:/.test(o.aor)) throw new Error("--aor must be a sip: URI");
  if (o.answer < 1) throw new Error("--answer must be at least 1");
  if (o.expires < 1) throw new Error("--expires must be at least 1");
  if (o.timeoutMs < 1) throw new Error("--timeout-ms must be at least 1");
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`usage: node agent.mjs ${USAGE}\n`);
  if (e.message === "help") process.exit(0);
  process.stderr.write(`agent.mjs: ${e.message}\n`);
  process.exit(2);
}

// --ca is the only trust anchor for wss:// (see node-ws.mjs).
let ca;
if (opts.ca) {
  try {
    ca = readFileSync(opts.ca);
  } catch (e) {
    result.errors.push(`cannot read --ca ${opts.ca}: ${e.message}`);
    finish(1);
  }
}
const wsErrors = useNodeWebSocket(ca, log);

// Hard stop a little after the run's own deadline, whatever happens.
const hardStop = setTimeout(() => {
  log(`hard timeout after ${opts.timeoutMs + 5000} ms`);
  result.errors.push(`timeout (${opts.timeoutMs} ms): no orderly end`);
  finish(1);
}, opts.timeoutMs + 5000);
hardStop.unref();

process.on("unhandledRejection", (e) => log(`unhandled rejection: ${e && e.stack ? e.stack : e}`));

class Timeout extends Error {}
const deadline = start + opts.timeoutMs;
// Resolves with `promise`, or rejects with Timeout at `until`.
const bounded = (promise, what, until = deadline) => {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Timeout(`timeout while ${what}`)), Math.max(0, until - Date.now()));
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const aor = UserAgent.makeURI(opts.aor);
if (!aor) {
  result.errors.push(`invalid AOR: ${opts.aor}`);
  finish(1);
}

let ended = 0; // calls that reached Terminated after being answered
let allEnded;
const allEndedP = new Promise((resolve) => (allEnded = resolve));

function onInvite(invitation) {
  const n = result.answered + 1;
  const from = invitation.remoteIdentity.uri.toString();
  log(`call ${n}: INVITE from ${from}`);
  let established = false;
  invitation.delegate = {
    onBye: (bye) => {
      result.byes++;
      log(`call ${n}: BYE from the far end`);
      bye.accept().catch((e) => result.errors.push(`call ${n}: answering BYE: ${e.message || e}`));
    },
  };
  invitation.stateChange.addListener((state) => {
    if (state === SessionState.Established) {
      established = true;
      result.answered++;
      log(`call ${n}: established (200 OK sent)`);
    }
    if (state === SessionState.Terminated) {
      if (!established) {
        result.errors.push(`call ${n}: ended before it was established`);
        return;
      }
      ended++;
      log(`call ${n}: ended`);
      if (ended >= opts.answer) allEnded();
    }
  });
  invitation.accept().catch((e) => result.errors.push(`call ${n}: accepting the INVITE: ${e.message || e}`));
}

const ua = new UserAgent({
  uri: aor, // the AOR: the REGISTER's From and To name it
  transportOptions: {
    server: opts.server,
    connectionTimeout: Math.max(1, Math.min(10, Math.ceil(opts.timeoutMs / 1000))),
    traceSip: opts.verbose,
  },
  sessionDescriptionHandlerFactory: () => new FixedSdpHandler(20000 + 2 * Math.floor(Math.random() * 5000)),
  logBuiltinEnabled: false,
  logLevel: opts.verbose ? "debug" : "warn",
  logConnector: (level, category, label, content) => {
    if (!opts.verbose && level !== "error" && level !== "warn") return;
    if (typeof content === "string" && content.includes('"reconnectionAttempts" as has apparently')) return;
    log(`[sip.js ${level}] ${category}: ${content}`);
  },
  reconnectionAttempts: 0,
  logConfiguration: false,
  userAgentString: "viaduct-test-peer sip.js agent",
  delegate: {
    onInvite,
    onDisconnect: (error) => {
      if (error) log(`transport disconnected: ${error.message || error}`);
    },
  },
});
result.contact = ua.contact.uri.toString();

const registerer = new Registerer(ua, { expires: opts.expires });
const registeredP = new Promise((resolve) => {
  registerer.stateChange.addListener((state) => {
    log(`registration: ${state}`);
    if (state === RegistererState.Registered) resolve();
  });
});

try {
  log(`connecting to ${opts.server}`);
  await bounded(ua.start(), `connecting to ${opts.server}`);
  log(`connected; Contact ${result.contact}; REGISTER ${opts.aor} for ${opts.expires} s`);
  let rejected;
  const rejectedP = new Promise((_, reject) => (rejected = reject));
  rejectedP.catch(() => {});
  await bounded(
    registerer.register({
      requestDelegate: {
        onReject: (response) =>
          rejected(new Error(`REGISTER answered ${response.message.statusCode} ${response.message.reasonPhrase}`)),
      },
    }),
    "sending REGISTER",
  );
  await bounded(Promise.race([registeredP, rejectedP]), "waiting for the REGISTER's 200");
  result.registered = true;
  // The line the test runner waits for before it places calls.
  process.stderr.write("REGISTERED\n");
  await bounded(allEndedP, `waiting for ${opts.answer} calls to end (answered ${result.answered}, byes ${result.byes})`);
} catch (e) {
  result.errors.push(e instanceof Timeout ? e.message : `error: ${e && e.message ? e.message : e}`);
  log(result.errors[result.errors.length - 1]);
}

// Unregister (bounded by a grace period past the deadline), then stop.
if (result.registered) {
  const unregisteredP = new Promise((resolve) => {
    registerer.stateChange.addListener((state) => {
      if (state === RegistererState.Unregistered) resolve();
    });
  });
  try {
    await bounded(registerer.unregister(), "sending the un-REGISTER", Math.max(deadline, Date.now()) + 2000);
    await bounded(unregisteredP, "waiting for the un-REGISTER's 200", Math.max(deadline, Date.now()) + 2000);
    result.unregistered = true;
  } catch (e) {
    result.errors.push(`unregistering: ${e.message || e}`);
  }
}
await Promise.race([ua.stop().catch(() => {}), sleep(1500)]);

result.ok =
  result.registered &&
  result.unregistered &&
  result.errors.length === 0 &&
  result.answered === opts.answer &&
  result.byes === opts.answer;
if (!result.ok) result.errors.push(...wsErrors);
log(`finished: ${JSON.stringify(result)}`);
finish(result.ok ? 0 : 1);
