// Command-line parsing shared by call.mjs and browser.mjs.

export const USAGE_COMMON =
  "--server ws://HOST:PORT|wss://HOST:PORT --target sip:user@HOST:PORT --calls N " +
  "[--ca FILE] [--hold-ms MS] [--timeout-ms MS] [--expect-remote-bye] [--from SIP-URI] [--verbose]";

/** Parses argv into options; throws Error with a message on bad input. */
export function parseArgs(argv) {
  const o = {
    server: "",
    target: "",
    calls: 1,
    ca: "",
    holdMs: 200,
    timeoutMs: 30000,
    expectRemoteBye: false,
    from: undefined,
    verbose: false,
  };
  const int = (name, v) => {
    if (v === undefined || !/^\d+$/.test(v)) throw new Error(`${name} needs a non-negative integer, got ${v}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case "--server":
        o.server = argv[++i] ?? "";
        break;
      case "--target":
        o.target = argv[++i] ?? "";
        break;
      case "--calls":
        o.calls = int(a, argv[++i]);
        break;
      case "--ca":
        o.ca = argv[++i] ?? "";
        break;
      case "--hold-ms":
        o.holdMs = int(a, argv[++i]);
        break;
      case "--timeout-ms":
        o.timeoutMs = int(a, argv[++i]);
        break;
      case "--from":
        o.from = argv[++i];
        break;
      case "--expect-remote-bye":
        o.expectRemoteBye = true;
        break;
      case "--verbose":
        o.verbose = true;
        break;
      case "-h":
      case "--help":
        throw new Error("help");
      default:
        throw new Error(`unknown argument: ${a}`);
    }
  }
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
