#!/usr/bin/env node
// The same SIP.js calls as call.mjs, placed from headless Debian Chromium
// (/usr/bin/chromium) driven by playwright-core. A static server on
// 127.0.0.1 (free port) serves page.html, core.mjs and SIP.js's ES modules.
// Prints one JSON line on stdout (call.mjs's, plus "browser"); progress and
// the page's console go to stderr. Exit 0 only when the run is ok.

import { X509Certificate, createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeSync } from "node:fs";
import { createServer } from "node:http";
import { isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { USAGE_COMMON, emptyResult, parseArgs } from "./args.mjs";

const CHROMIUM = "/usr/bin/chromium";
const here = dirname(fileURLToPath(import.meta.url));
const log = (msg) => process.stderr.write(`browser.mjs: ${msg}\n`);

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`usage: node browser.mjs ${USAGE_COMMON}\n`);
  if (e.message === "help") process.exit(0);
  process.stderr.write(`browser.mjs: ${e.message}\n`);
  process.exit(2);
}

let server;
let context;
let userDataDir;
let browserVersion = "";

async function cleanup() {
  const bounded = (p) => Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
  if (context) await bounded(context.close()); // playwright stops Chromium (by its PID)
  if (server) {
    server.closeAllConnections();
    await bounded(new Promise((r) => server.close(r)));
  }
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}

let finished = false;
async function finish(result, code) {
  if (finished) return;
  finished = true;
  await cleanup();
  writeSync(1, JSON.stringify({ ...result, browser: browserVersion }) + "\n");
  process.exit(code);
}

// Whatever happens, stop a little after the run's own deadline.
setTimeout(() => {
  log(`hard timeout after ${opts.timeoutMs + 20000} ms`);
  finish(emptyResult(opts.calls, `timeout (${opts.timeoutMs} ms): no result from the page`), 1);
}, opts.timeoutMs + 20000).unref();

// --- static files: only the page, core.mjs and SIP.js's lib/ -------------
const TYPES = { ".html": "text/html; charset=utf-8", ".mjs": "text/javascript", ".js": "text/javascript" };
const SIPJS_LIB = join(here, "node_modules", "sip.js", "lib") + sep;

function serve(req, res) {
  const url = new URL(req.url, "http://127.0.0.1");
  let file;
  if (url.pathname === "/favicon.ico") {
    res.writeHead(204).end();
    return;
  }
  if (url.pathname === "/" || url.pathname === "/page.html") file = join(here, "page.html");
  else if (url.pathname === "/core.mjs") file = join(here, "core.mjs");
  else if (url.pathname.startsWith("/node_modules/sip.js/lib/")) {
    file = normalize(join(here, decodeURIComponent(url.pathname)));
    if (!file.startsWith(SIPJS_LIB) || extname(file) !== ".js") file = undefined;
  }
  let body;
  try {
    if (file && req.method === "GET") body = readFileSync(file);
  } catch (_) {
    body = undefined;
  }
  if (!body) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  res.writeHead(200, { "content-type": TYPES[extname(file)], "cache-control": "no-store" }).end(body);
}

// --- certificate trust ---------------------------------------------------
// Chromium has no command-line switch to add a trust anchor, only
// --ignore-certificate-errors-spki-list (honoured only together with a
// --user-data-dir, which the persistent context gives), and that list is
// matched against the chain the server sends, which holds the leaf but not
// a private root. So with --ca, Node first opens one TLS connection to the
// wss:// server and verifies its chain and name against the CA (exactly as
// call.mjs does), then Chromium is told to accept that verified leaf key
// (and the CA's own keys): a server with any other certificate is refused.
// Without --ca, a wss:// server's certificate is not checked at all
// (--ignore-certificate-errors).
function spki(derOrPem) {
  const der = new X509Certificate(derOrPem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("base64");
}

function caSpkis(pemFile) {
  const pem = readFileSync(pemFile, "utf8");
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) || [];
  if (blocks.length === 0) throw new Error(`no certificate in ${pemFile}`);
  return blocks.map(spki);
}

/** Verifies the wss:// server's certificate against `ca`; returns its leaf SPKI hash. */
function verifiedLeafSpki(serverUrl, ca) {
  const u = new URL(serverUrl);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port || 443);
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host, port, ca, servername: isIP(host) ? undefined : host, ALPNProtocols: ["http/1.1"] });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`TLS probe of ${host}:${port}: no handshake in 5 s`));
    }, 5000);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      const leaf = sock.getPeerCertificate();
      sock.end();
      resolve(spki(leaf.raw));
    });
    sock.once("error", (e) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new Error(`TLS probe of ${host}:${port} with --ca: ${e.message}`));
    });
  });
}

try {
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=MediaRouter,OptimizationHints,Translate",
    "--no-proxy-server",
    // Loopback only: no host resolves but localhost, 127.0.0.1 and ::1.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE ::1",
  ];
  if (opts.ca && opts.server.startsWith("wss:")) {
    const hashes = caSpkis(opts.ca);
    const leaf = await verifiedLeafSpki(opts.server, readFileSync(opts.ca));
    log(`${opts.server}: certificate verified against ${opts.ca}; leaf key sha256/${leaf}`);
    args.push(`--ignore-certificate-errors-spki-list=${[leaf, ...hashes].join(",")}`);
  } else if (opts.server.startsWith("wss:")) {
    args.push("--ignore-certificate-errors");
    log("no --ca: the wss:// server's certificate is not verified");
  }

  server = createServer(serve);
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const pageUrl = `http://127.0.0.1:${server.address().port}/page.html`;
  log(`serving ${pageUrl}`);

  userDataDir = mkdtempSync(join(tmpdir(), "viaduct-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    timeout: 30000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => process.stderr.write(`page: ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`page error: ${e.message}\n`));
  await page.goto(pageUrl, { timeout: 15000 });
  await page.waitForFunction(() => window.peerReady === true, null, { timeout: 15000 });
  browserVersion = await page.evaluate(() => navigator.userAgent.match(/(?:Headless)?Chrom(?:e|ium)\/[\d.]+/)?.[0] || "");
  log(`page ready in ${browserVersion}`);

  const pageOpts = {
    server: opts.server,
    target: opts.target,
    calls: opts.calls,
    holdMs: opts.holdMs,
    timeoutMs: opts.timeoutMs,
    expectRemoteBye: opts.expectRemoteBye,
    from: opts.from,
    verbose: opts.verbose,
  };
  // runCalls bounds itself by timeoutMs; this is the belt to its braces.
  const result = await Promise.race([
    page.evaluate((o) => window.runCalls(o), pageOpts),
    new Promise((resolve) =>
      setTimeout(
        () => resolve(emptyResult(opts.calls, `timeout (${opts.timeoutMs} ms): the page gave no result`)),
        opts.timeoutMs + 5000,
      ),
    ),
  ]);
  await finish(result, result.ok ? 0 : 1);
} catch (e) {
  log(`error: ${e && e.stack ? e.stack : e}`);
  await finish(emptyResult(opts.calls, `browser: ${e && e.message ? e.message.split("\n")[0] : e}`), 1);
}
