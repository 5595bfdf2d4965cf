// Call logic shared by call.mjs (Node) and page.html (Chromium).
//
// Runs in both environments: it imports only "sip.js" (a bare specifier that
// Node resolves from node_modules and the page resolves with an import map)
// and uses no Node or DOM API beyond timers and the global WebSocket that
// SIP.js itself uses.

import { Inviter, SessionState, UserAgent } from "sip.js";

/** A fixed SDP offer: one audio stream on 127.0.0.1, no ICE, no DTLS. */
export function fixedSdp(port) {
  const id = Math.floor(Math.random() * 1e9);
  return [
    "v=0",
    `o=- ${id} 1 IN IP4 127.0.0.1`,
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    `m=audio ${port} RTP/AVP 0 8 101`,
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "",
  ].join("\r\n");
}

/**
 * Session description handler without WebRTC: offers (or answers with) the
 * fixed SDP and accepts whatever the far end sends.
 */
export class FixedSdpHandler {
  constructor(port) {
    this.port = port;
    this.remote = undefined;
  }
  close() {}
  getDescription() {
    return Promise.resolve({ body: fixedSdp(this.port), contentType: "application/sdp" });
  }
  hasDescription(contentType) {
    return contentType === "application/sdp";
  }
  rollbackDescription() {
    return Promise.resolve();
  }
  setDescription(sdp) {
    this.remote = sdp;
    return Promise.resolve();
  }
  sendDtmf() {
    return false;
  }
}

class Timeout extends Error {}

/**
 * Places `calls` sequential calls from one UserAgent (no REGISTER) through the
 * WebSocket server `server` to `target`, and returns the counts:
 *   { calls, attempted, established, failed, remote_byes, local_byes,
 *     errors: [...], record_route: [...], contact, ok }
 * It never throws and never runs past `timeoutMs` (plus at most ~1.5 s of
 * clean-up); on timeout `errors` says where it was.
 */
export async function runCalls(opts) {
  const {
    server,
    target,
    calls = 1,
    holdMs = 200,
    timeoutMs = 30000,
    expectRemoteBye = false,
    from = undefined,
    verbose = false,
    log = () => {},
  } = opts;

  const result = {
    calls,
    attempted: 0,
    established: 0,
    failed: 0,
    remote_byes: 0,
    local_byes: 0,
    errors: [],
    record_route: [],
    contact: "",
    ok: false,
  };
  const start = Date.now();
  const deadline = start + timeoutMs;
  const since = () => `${Date.now() - start}ms`;

  // Resolves with `promise`, or rejects with Timeout at the overall deadline.
  const bounded = (promise, what) => {
    let timer;
    const left = Math.max(0, deadline - Date.now());
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(`timeout (${timeoutMs} ms) while ${what}`)), left);
    });
    return Promise.race([promise, t]).finally(() => clearTimeout(timer));
  };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const targetUri = UserAgent.makeURI(target);
  if (!targetUri) {
    result.errors.push(`invalid target URI: ${target}`);
    return result;
  }
  let fromUri;
  if (from) {
    fromUri = UserAgent.makeURI(from);
    if (!fromUri) {
      result.errors.push(`invalid from URI: ${from}`);
      return result;
    }
  }

  const ua = new UserAgent({
    uri: fromUri, // undefined: SIP.js's anonymous.*@anonymous.invalid
    transportOptions: {
      server,
      connectionTimeout: Math.max(1, Math.min(10, Math.ceil(timeoutMs / 1000))),
      traceSip: verbose,
    },
    sessionDescriptionHandlerFactory: () => new FixedSdpHandler(20000 + 2 * Math.floor(Math.random() * 5000)),
    logBuiltinEnabled: false,
    logLevel: verbose ? "debug" : "warn",
    // SIP.js hands the connector every level: keep errors and warnings
    // unless --verbose.
    logConnector: (level, category, label, content) => {
      if (!verbose && level !== "error" && level !== "warn") return;
      // SIP.js 0.21 warns that reconnectionAttempts is deprecated even though
      // it is the documented option: not worth a line.
      if (typeof content === "string" && content.includes('"reconnectionAttempts" as has apparently')) return;
      log(`[sip.js ${level}] ${category}: ${content}`);
    },
    // No automatic reconnection: a dropped WebSocket must show up as an error.
    reconnectionAttempts: 0,
    logConfiguration: false,
    userAgentString: "viaduct-test-peer sip.js",
    delegate: {
      onDisconnect: (error) => {
        if (error) log(`transport disconnected: ${error.message || error}`);
      },
    },
  });
  result.contact = ua.contact.uri.toString();

  let current; // the session in progress, for clean-up on timeout
  try {
    log(`${since()} connecting to ${server}`);
    await bounded(ua.start(), `connecting to ${server}`);
    log(`${since()} connected; Contact ${result.contact}`);

    for (let i = 1; i <= calls; i++) {
      result.attempted = i;
      let remoteBye;
      const remoteByeArrived = new Promise((resolve) => (remoteBye = resolve));
      let rejectedWith = "";
      let established;
      let ended;
      const establishedP = new Promise((resolve, reject) => (established = { resolve, reject }));
      const endedP = new Promise((resolve) => (ended = resolve));
      establishedP.catch(() => {}); // awaited below; never an unhandled rejection

      const inviter = new Inviter(ua, targetUri, {
        delegate: {
          onBye: (bye) => {
            result.remote_byes++;
            log(`${since()} call ${i}: BYE from the far end`);
            bye.accept().catch((e) => result.errors.push(`call ${i}: answering BYE: ${e.message || e}`));
            remoteBye();
          },
        },
      });
      current = inviter;
      inviter.stateChange.addListener((state) => {
        if (state === SessionState.Established) established.resolve();
        if (state === SessionState.Terminated) {
          established.reject(new Error(rejectedWith || "session terminated before it was established"));
          ended();
        }
      });

      log(`${since()} call ${i}: INVITE ${target}`);
      await bounded(
        inviter.invite({
          requestDelegate: {
            onAccept: (response) => {
              result.record_route = response.message.getHeaders("record-route");
            },
            onReject: (response) => {
              rejectedWith = `INVITE answered ${response.message.statusCode} ${response.message.reasonPhrase}`;
            },
          },
        }),
        `sending INVITE of call ${i}`,
      );
      try {
        await bounded(establishedP, `waiting for the 200 OK of call ${i}`);
      } catch (e) {
        if (e instanceof Timeout) throw e;
        result.failed++;
        result.errors.push(`call ${i}: ${e.message || e}`);
        log(`${since()} call ${i}: failed: ${e.message || e}`);
        continue;
      }
      result.established++;
      log(`${since()} call ${i}: established (ACK sent)`);

      if (expectRemoteBye) {
        await bounded(remoteByeArrived, `waiting for the far end's BYE of call ${i}`);
      } else {
        const byeEarly = await bounded(
          Promise.race([sleep(holdMs).then(() => false), remoteByeArrived.then(() => true)]),
          `holding call ${i}`,
        );
        if (byeEarly) {
          result.errors.push(`call ${i}: unexpected BYE from the far end during the hold`);
        } else {
          let byeDone;
          const byeDoneP = new Promise((resolve) => (byeDone = resolve));
          log(`${since()} call ${i}: sending BYE`);
          await bounded(
            inviter.bye({
              requestDelegate: {
                onAccept: () => {
                  result.local_byes++;
                  byeDone();
                },
                onReject: (response) => {
                  result.errors.push(
                    `call ${i}: BYE answered ${response.message.statusCode} ${response.message.reasonPhrase}`,
                  );
                  byeDone();
                },
              },
            }),
            `sending BYE of call ${i}`,
          );
          await bounded(byeDoneP, `waiting for the answer to the BYE of call ${i}`);
        }
      }
      await bounded(endedP, `waiting for call ${i} to terminate`);
      current = undefined;
      log(`${since()} call ${i}: done`);
    }
  } catch (e) {
    result.errors.push(e instanceof Timeout ? e.message : `error: ${e && e.message ? e.message : e}`);
    log(`${since()} ${result.errors[result.errors.length - 1]}`);
    if (current && current.state === SessionState.Establishing) result.failed++;
    try {
      if (current && current.state === SessionState.Establishing) current.cancel();
      if (current && current.state === SessionState.Established) current.bye();
    } catch (_) {
      // best effort
    }
  } finally {
    await Promise.race([ua.stop().catch(() => {}), sleep(1500)]);
  }

  result.ok =
    result.errors.length === 0 &&
    result.established === calls &&
    result.failed === 0 &&
    (expectRemoteBye ? result.remote_byes === calls : result.local_byes === calls);
  log(`${since()} finished: ${JSON.stringify(result)}`);
  return result;
}
