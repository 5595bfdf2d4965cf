// Opens N idle SIP WebSocket connections (subprotocol "sip", RFC 7118) and
// holds them for examples/bench/tls-extra, which reads the proxy's memory.
//
//   node examples/bench/ws-idle.mjs URL N [CA_FILE]
//
// Prints "open <ok> failed <k>" once every connection has opened or failed,
// then holds them until SIGTERM (at most 10 minutes), drops them and exits.
// Uses `ws` from tests/peers/node (tests/peers/node/install puts it there).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../../tests/peers/node/package.json", import.meta.url));
const WebSocket = require("ws");

const [url, nText, caFile] = process.argv.slice(2);
const n = Number(nText);
if (!url || !(n > 0)) {
  console.error("usage: ws-idle.mjs URL N [CA_FILE]");
  process.exit(2);
}
const options = caFile ? { ca: readFileSync(caFile) } : {};
const sockets = [];
let ok = 0;
let failed = 0;
let next = 0;
const CONCURRENT = 20;

function openOne() {
  if (next >= n) return;
  next++;
  const ws = new WebSocket(url, "sip", options);
  let settled = false;
  const settle = (good, why) => {
    if (settled) return;
    settled = true;
    if (good) ok++;
    else {
      failed++;
      if (failed <= 5) console.error(`connection failed: ${why}`);
    }
    if (ok + failed === n) console.log(`open ${ok} failed ${failed}`);
    else openOne();
  };
  ws.on("open", () => {
    if (ws.protocol !== "sip") settle(false, `subprotocol ${JSON.stringify(ws.protocol)}`);
    else settle(true);
  });
  ws.on("error", (e) => settle(false, e.message));
  ws.on("close", () => settle(false, "closed before open"));
  sockets.push(ws);
}

function stop() {
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

for (let i = 0; i < Math.min(CONCURRENT, n); i++) openOne();
process.on("SIGTERM", stop);
setTimeout(stop, 600_000);
