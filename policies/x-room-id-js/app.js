// x-room-id in JavaScript: tags each INVITE with the room it is for and a
// fresh session id, then forwards to the configured backends, in order
// (failover).
//
// `INVITE sip:room-42@host` leaves with `X-Room-ID: room-42` and
// `X-Session-ID: <32 hex digits>`. Other methods take the same route without
// the headers; a Request-URI without a user part is relayed untouched.
//
// The same behaviour, on the wire, as the Rust reference `policies/x-room-id`.

import { randomU64 } from 'viaduct:policy/clock@0.3.0';

// The `backends` of the config, tried in order. Module state lives as long as
// the instance (one per proxy worker and policy version).
let backends = [];

// The comma-separated items of `key` (last value wins), trimmed, empty items
// skipped: the guest SDK's `Config::list`.
function configList(config, key) {
  let value;
  for (const [k, v] of config) {
    if (k === key) value = v;
  }
  if (value === undefined) return [];
  return value.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

// 128 random bits (two u64, as BigInt) as 32 lowercase hex digits.
function sessionId(high, low) {
  return high.toString(16).padStart(16, '0') + low.toString(16).padStart(16, '0');
}

function route() {
  if (backends.length === 0) return { tag: 'relay' };
  return {
    tag: 'forward',
    val: backends.map((uri) => ({ uri, transport: undefined, timeoutMs: undefined, requestUri: undefined, route: [] })),
  };
}

// `init`: a thrown string would refuse this version; this policy accepts any config.
export function init(config) {
  backends = configList(config, 'backends');
}

export function onRequest(req) {
  const room = req.requestUriUser();
  if (room === undefined || room === '') return { tag: 'relay' };
  if (req.method() === 'INVITE') {
    req.setHeader('X-Room-ID', room);
    const high = randomU64();
    const low = randomU64();
    req.setHeader('X-Session-ID', sessionId(high, low));
  }
  return route();
}

// Try the next backend, or answer the best response when none is left.
export function onFailure(_req, _code) {
  return { tag: 'continue' };
}
