#!/usr/bin/env python3
"""Place N calls over TLS through a SIP proxy with pjsua2 (PJSIP 2.15.1).

    python tls_call.py --proxy 127.0.0.1:5061 --target sip:user@127.0.0.1:5070 \\
        --calls 10 --ca ca.pem [--hold-ms 500] [--timeout-s 30] [--local-port 0]

Signalling: one TLS transport bound to 127.0.0.1 (TLS 1.2: pjsua2-python
bundles OpenSSL 1.0.2), the server certificate verified against --ca
(`verifyServer`), every request sent to the outbound proxy
`sip:HOST:PORT;transport=tls;lr`.  No REGISTER.  Media: null audio device,
RTP bound to 127.0.0.1.

Calls run one after another: make the call, wait for CONFIRMED, hold it
--hold-ms, hang up, wait for DISCONNECTED.  A call that ends without being
confirmed counts as failed and the next one starts.  The whole run is bounded
by --timeout-s.

Prints ONE JSON line on stdout at the end:
    {"calls":N,"confirmed":x,"failed":y,"last_status":[...],"errors":[...]}
(last_status: the last SIP status code of each call, 0 = none or never
placed) and
exits 0 only when all N calls were confirmed (1 otherwise, 2 on bad usage).
pjsua's own log goes to stderr (--log-level, default 1 = errors only).

The calls run in a child process (this file again, with --_worker-fd): PJSIP
aborts the whole process on some failed assertions (e.g. "Unable to send
ACK!" when the callee's Contact is unreachable on the account's transport),
and the parent still prints the JSON line then, with the child's last stderr
lines among the errors.
"""

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Place N calls over TLS through a SIP proxy (pjsua2).")
    ap.add_argument("--proxy", required=True,
                    help="IPv4:PORT of the proxy's TLS listener (IPv6 unsupported)")
    ap.add_argument("--target", required=True, help="Request-URI of each call, e.g. sip:user@127.0.0.1:5070")
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--ca", help="PEM file of the CA (or self-signed certificate) the proxy's "
                                 "certificate must verify against")
    ap.add_argument("--hold-ms", type=int, default=500, help="how long each call stays up once confirmed")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="bound of the whole run")
    ap.add_argument("--local-port", type=int, default=0, help="local TLS port (0 = any)")
    ap.add_argument("--bind", default="127.0.0.1", help="local IPv4 address for signalling and media")
    ap.add_argument("--call-timeout-s", type=float, default=10.0,
                    help="bound of one call's setup (CONFIRMED) and of its teardown (DISCONNECTED)")
    ap.add_argument("--log-level", type=int, default=1,
                    help="pjsua log level 0-6 on stderr (4 and up: with SIP messages)")
    ap.add_argument("--no-verify", action="store_true",
                    help="DEBUGGING ONLY: do not verify the proxy's certificate")
    ap.add_argument("--_worker-fd", type=int, default=-1, dest="worker_fd", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.calls < 1:
        ap.error("--calls must be >= 1")
    if a.timeout_s <= 0:
        ap.error("--timeout-s must be > 0")
    if not a.no_verify and not a.ca:
        ap.error("--ca is required (or --no-verify, for debugging only)")
    if ":" in a.bind or a.proxy.startswith("["):
        # pjsua2-python 2.15.1.post1: an account with IPv6 media aborts in
        # pjsua_acc_add (assertion ipv6_media_use == PJSUA_IPV6_DISABLED, so
        # the wheel is built without PJ_HAS_IPV6); IPv6 was never made to work
        ap.error("IPv6 is not supported by tls_call.py (pjsua2-python wheel: IPv6 media asserts)")
    if a.ca and not os.path.isfile(a.ca):
        ap.error("--ca %s: no such file" % a.ca)
    return a


# --------------------------------------------------------------------------
# parent: runs the worker, bounded, and prints the one JSON line

def run_parent(a, argv):
    result = {"calls": a.calls, "confirmed": 0, "failed": 0, "last_status": [], "errors": []}
    deadline = time.monotonic() + a.timeout_s + 10.0  # the worker bounds itself by timeout_s
    rfd, wfd = os.pipe()
    cmd = [sys.executable, os.path.abspath(__file__)] + list(argv) + ["--_worker-fd", str(wfd)]
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, pass_fds=(wfd,))
    os.close(wfd)
    sel = selectors.DefaultSelector()
    sel.register(rfd, selectors.EVENT_READ, "result")
    sel.register(child.stderr, selectors.EVENT_READ, "stderr")
    buf = {"result": b"", "stderr": b""}
    tail = []
    done = False
    open_streams = 2
    timed_out = False

    def handle_line(kind, line):
        nonlocal done
        if kind == "stderr":
            text = line.decode("utf-8", "replace")
            sys.stderr.write(text + "\n")
            tail.append(text)
            del tail[:-5]
            return
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if "call" in msg:
            result["last_status"].append(msg.get("status", 0))
            if msg.get("ok"):
                result["confirmed"] += 1
            else:
                result["failed"] += 1
            if msg.get("error"):
                result["errors"].append(msg["error"])
        elif "done" in msg:
            done = True
            result["errors"].extend(msg.get("errors", []))

    while open_streams > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            fd = key.fileobj if isinstance(key.fileobj, int) else key.fileobj.fileno()
            chunk = os.read(fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                if buf[key.data]:
                    handle_line(key.data, buf[key.data])
                    buf[key.data] = b""
                continue
            buf[key.data] += chunk
            while b"\n" in buf[key.data]:
                line, buf[key.data] = buf[key.data].split(b"\n", 1)
                handle_line(key.data, line)
    sel.close()
    os.close(rfd)

    if timed_out:
        result["errors"].append("worker still running %.1fs after --timeout-s: killed" % 10.0)
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        rc = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        rc = child.wait(timeout=10)
    child.stderr.close()
    if not done and not timed_out:
        how = ("signal %d (%s)" % (-rc, signal.Signals(-rc).name)) if rc < 0 else "exit status %d" % rc
        result["errors"].append("pjsua worker died (%s) after %d call(s); stderr tail: %s"
                                % (how, len(result["last_status"]), " | ".join(tail)))
    missing = a.calls - result["confirmed"] - result["failed"]
    if missing > 0:
        result["failed"] += missing
        result["last_status"].extend([0] * missing)
        result["errors"].append("%d call(s) never placed" % missing)
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0 if result["confirmed"] == a.calls else 1


# --------------------------------------------------------------------------
# worker: the pjsua2 endpoint

def run_worker(a):
    out = os.fdopen(a.worker_fd, "w", buffering=1)

    def report(**msg):
        out.write(json.dumps(msg, separators=(",", ":")) + "\n")
        out.flush()

    try:
        import pjsua2 as pj
    except ImportError as exc:
        report(done=True, errors=["cannot import pjsua2 (%s): run tests/peers/pjsua/install "
                                  "and use the venv's python" % exc])
        return 1

    # pjlib's log writer prints to stdout: send it to stderr (our stdout is
    # /dev/null, the parent owns the real one), and silence the start-up
    # lines printed before libInit() applies the log level.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull if a.log_level < 4 else 2, 1)

    class Call(pj.Call):
        def __init__(self, acc):
            pj.Call.__init__(self, acc)
            self.confirmed = False
            self.disconnected = False
            self.last_status = 0
            self.last_reason = ""

        def onCallState(self, prm):
            ci = self.getInfo()
            self.last_status = ci.lastStatusCode
            self.last_reason = ci.lastReason
            if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
                self.confirmed = True
            elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.disconnected = True

    def status_of(call):
        if call.last_status == 0:
            return "no status code"
        return ("last status %d %s" % (call.last_status, call.last_reason)).strip()

    class Account(pj.Account):
        def onIncomingCall(self, prm):
            # a caller only: refuse anything incoming
            call = pj.Call(self, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = pj.PJSIP_SC_BUSY_HERE
            call.hangup(op)

    deadline = time.monotonic() + a.timeout_s
    errors = []
    ep = pj.Endpoint()
    ep.libCreate()
    try:
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0          # callbacks run inside libHandleEvents() below
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.maxCalls = 4
        ep_cfg.uaConfig.userAgent = "viaduct-tests pjsua2 tls_call.py"
        ep_cfg.logConfig.level = a.log_level
        ep_cfg.logConfig.consoleLevel = a.log_level
        ep_cfg.logConfig.msgLogging = 1 if a.log_level >= 4 else 0
        ep.libInit(ep_cfg)
        os.dup2(2, 1)
        os.close(devnull)

        tcfg = pj.TransportConfig()
        tcfg.port = a.local_port
        tcfg.boundAddress = a.bind
        tcfg.publicAddress = a.bind
        tls = tcfg.tlsConfig
        tls.method = pj.PJSIP_TLSV1_2_METHOD
        if a.ca:
            tls.CaListFile = a.ca
        tls.verifyServer = not a.no_verify
        tls.verifyClient = False
        tls.requireClientCert = False
        tls_id = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)

        ep.libStart()
        ep.audDevManager().setNullDev()

        acfg = pj.AccountConfig()
        acfg.idUri = "sip:tls-caller@%s" % a.bind
        acfg.regConfig.registrarUri = ""
        acfg.regConfig.registerOnAdd = False
        acfg.sipConfig.proxies.append("sip:%s;transport=tls;lr" % a.proxy)
        acfg.sipConfig.transportId = tls_id
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.mediaConfig.transportConfig.boundAddress = a.bind
        acfg.mediaConfig.transportConfig.publicAddress = a.bind
        acfg.mediaConfig.transportConfig.port = 0
        acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_DISABLED
        acc = Account()
        acc.create(acfg)

        def pump(until, bound):
            """Handle events until until() or min(bound, deadline); returns until()."""
            end = min(bound, deadline)
            while time.monotonic() < end:
                if until():
                    return True
                ep.libHandleEvents(10)
            return until()

        for n in range(1, a.calls + 1):
            if time.monotonic() >= deadline:
                errors.append("overall timeout (%.1fs) before call %d" % (a.timeout_s, n))
                break
            call = Call(acc)
            try:
                call.makeCall(a.target, pj.CallOpParam(True))
            except pj.Error as e:
                report(call=n, ok=False, status=0, error="call %d: makeCall: %s" % (n, e.info()))
                continue
            started = time.monotonic()
            pump(lambda: call.confirmed or call.disconnected, started + a.call_timeout_s)
            if call.confirmed and not call.disconnected:
                pump(lambda: call.disconnected, time.monotonic() + a.hold_ms / 1000.0)
            ok = call.confirmed and not call.disconnected
            error = None
            if not ok:
                if call.confirmed:
                    error = "call %d: ended by the far side while held (%s)" % (n, status_of(call))
                elif call.disconnected:
                    error = "call %d: not confirmed (%s)" % (n, status_of(call))
                else:
                    error = "call %d: not confirmed after %.1fs%s (%s, then hung up)" % (
                        n, time.monotonic() - started,
                        ", overall --timeout-s reached" if time.monotonic() >= deadline else "",
                        status_of(call))
            if not call.disconnected:
                try:
                    call.hangup(pj.CallOpParam(True))
                except pj.Error as e:
                    error = error or "call %d: hangup: %s" % (n, e.info())
                # the teardown gets its own bound even past the overall deadline
                end = time.monotonic() + a.call_timeout_s
                while time.monotonic() < end and not call.disconnected:
                    ep.libHandleEvents(10)
                if not call.disconnected:
                    ok = False
                    error = error or "call %d: not DISCONNECTED %.1fs after hangup" % (n, a.call_timeout_s)
            report(call=n, ok=ok, status=call.last_status, error=error)
            del call
            ep.libHandleEvents(0)

        try:
            acc.shutdown()
        except pj.Error:
            pass
    except pj.Error as e:
        errors.append("pjsua2: %s" % e.info().strip())
    finally:
        try:
            ep.hangupAllCalls()
            ep.libDestroy()
        except pj.Error:
            pass
    report(done=True, errors=errors)
    out.close()
    return 0


def main(argv):
    a = parse_args(argv)
    if a.worker_fd >= 0:
        return run_worker(a)
    return run_parent(a, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
