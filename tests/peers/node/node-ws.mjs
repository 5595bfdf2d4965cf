// SIP.js's WebSocket in Node 20, shared by call.mjs and agent.mjs.

import { WebSocket as WsWebSocket } from "ws";

/**
 * Node 20 has no global WebSocket: SIP.js calls `new WebSocket(url, "sip")`,
 * so the handshake carries `Sec-WebSocket-Protocol: sip`. For wss:// with a
 * `ca` (PEM bytes), trust exactly that (verification stays on either way).
 * SIP.js only logs "WebSocket error occurred.": ws's own reason (a TLS error,
 * ECONNREFUSED, a refused handshake) is logged and kept in the returned
 * array, for the JSON line.
 */
export function useNodeWebSocket(ca, log) {
  const errors = [];
  globalThis.WebSocket = class PeerWebSocket extends WsWebSocket {
    constructor(address, protocols, options) {
      super(address, protocols, ca ? { ...options, ca } : options);
      this.on("error", (e) => {
        const msg = `WebSocket ${address}: ${e && e.message ? e.message : e}`;
        log(msg);
        errors.push(msg);
      });
    }
  };
  return errors;
}
