// Command-line parsing shared by call.mjs, browser.mjs and agent.mjs.

export const USAGE_COMMON =
  "--server ws://HOST:PORT|wss://HOST:PORT --target sip:user@HOST:PORT --calls N " +
  "[--ca FILE] [--hold-ms MS] [--timeout-ms MS] [--expect-remote-bye] [--from SIP-URI] [--verbose]";

/**
 * Reads argv into a copy of `defaults`: `spec` maps each option to
 * `[key, kind]`, kind "string" (`--name value`), "int" (a non-negative
 * integer value) or "flag" (`--name` alone sets true). Throws Error("help")
 * for -h/--help and an Error naming the problem otherwise.
 */
export function parseFlags(argv, defaults, spec) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") throw new Error("help");
    const known = spec[a];
    if (!known) throw new Error(`unknown argument: ${a}`);
    const [key, kind] = known;
    if (kind === "flag") {
      o[key] = true;
    } else if (kind === "int") {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v)) throw new Error(`${a} needs a non-negative integer, got ${v}`);
      o[key] = Number(v);
    } else {
      o[key] = argv[++i] ?? "";
    }
  }
  return o;
}

/** Parses argv into options; throws Error with a message on bad input. */
export function parseArgs(argv) {
  const o = parseFlags(
    argv,
    {
      server: "",
      target: "",
      calls: 1,
      ca: "",
      holdMs: 200,
      timeoutMs: 30000,
      expectRemoteBye: false,
      from: undefined,
      verbose: false,
    },
    {
      "--server": ["server", "string"],
      "--target": ["target", "string"],
      "--calls": ["calls", "int"],
      "--ca": ["ca", "string"],
      "--hold-ms": ["holdMs", "int"],
      "--timeout-ms": ["timeoutMs", "int"],
      "--from": ["from", "string"],
      "--expect-remote-bye": ["expectRemoteBye", "flag"],
      "--verbose": ["verbose", "flag"],
    },
  );
  if (!/^wss?:\/\//.test(o.server)) throw new Error("--server must be a ws:// or wss:// URL");
  if (!/^sips?:/.test(o.target)) throw new Error("--target must be a sip: URI");
  if (o.calls < 1) throw new Error("--calls must be at least 1");
  if (o.timeoutMs < 1) throw new Error("--timeout-ms must be at least 1");
  return o;
}

/** The JSON line printed when the run could not even start. */
export function emptyResult(calls, error) {
  return {
    calls,
    attempted: 0,
    established: 0,
    failed: 0,
    remote_byes: 0,
    local_byes: 0,
    errors: [error],
    record_route: [],
    contact: "",
    ok: false,
  };
}
