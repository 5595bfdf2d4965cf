#!/usr/bin/env python3
"""Highest SIPp call rate with 0 failed calls and 0 retransmissions, through
Viaduct and through Kamailio, alternated in one run on this machine.

Usage: examples/bench/sweep.py [--rates 500,1000,...] [--seconds 10] [--kamailio-children 1,2]

Loopback only; every SIPp run is bounded by -m and -timeout; every process
this script starts is stopped by its PID, also on failure.
"""
import argparse, csv, os, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXY, UAS, UAC = 15060, 15070, 15080
VIADUCT_ARGS = os.environ.get("VIADUCT_ARGS", "").split()


def free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def tree_cpu(pid):
    """CPU of a process and its children (Kamailio forks workers)."""
    total = cpu_seconds(pid)
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        out = []
    return total + sum(tree_cpu(int(c)) for c in out)


def run_load(rate, seconds, tmp):
    calls = rate * seconds
    stf = os.path.join(tmp, f"uac-{rate}-{time.monotonic_ns()}.csv")
    uac = subprocess.run(
        ["sipp", "-sn", "uac", f"127.0.0.1:{UAS}", "-rsa", f"127.0.0.1:{PROXY}", "-i", "127.0.0.1",
         "-p", str(UAC), "-m", str(calls), "-r", str(rate), "-l", str(rate * 4), "-timeout", f"{seconds * 3 + 20}s",
         "-nostdin", "-trace_stat", "-stf", stf, "-fd", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds * 3 + 40)
    with open(stf) as f:
        rows = list(csv.reader(f, delimiter=";"))
    head, last = rows[0], rows[-1]
    get = lambda k: int(last[head.index(k)])
    return {"ok": get("SuccessfulCall(C)"), "failed": get("FailedCall(C)"),
            "retrans": get("Retransmissions(C)"), "calls": calls, "exit": uac.returncode}


def start_viaduct(procs, tmp):
    log = open(os.path.join(tmp, "viaduct.log"), "w")
    return procs.start([os.path.join(ROOT, "target/release/viaduct"), "--listen", f"udp:127.0.0.1:{PROXY}",
                        "--log-level", "warn"] + VIADUCT_ARGS, stderr=log)


def start_kamailio(procs, tmp, children):
    run = tempfile.mkdtemp(dir=tmp)
    return procs.start(["kamailio", "-f", os.path.join(ROOT, "examples/bench/kamailio.cfg"), "-DD", "-E",
                        "-n", str(children), "-m", "1024", "-M", "8", "-x", "tlsf", "-X", "tlsf", "-b", "4194304",
                        "-Y", run, "-P", os.path.join(run, "k.pid"), "-w", run, "-A", "SIPP_BUILTIN_COMPAT",
                        "-A", f'NEXT_HOP="sip:127.0.0.1:{UAS}"', "-A", f"LISTEN=udp:127.0.0.1:{PROXY}"],
                       stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="500,1000,1500,2000,2500,3000,3500,4000")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--kamailio-children", default="1,2")
    ap.add_argument("--systems", default="viaduct,kamailio")
    args = ap.parse_args()
    for p in (PROXY, UAS, UAC):
        if not free(p):
            sys.exit(f"port {p} is busy")
    systems = []
    for s in args.systems.split(","):
        if s == "kamailio":
            systems += [(f"kamailio-{n}", int(n)) for n in args.kamailio_children.split(",")]
        else:
            systems.append((s, 0))
    tmp = tempfile.mkdtemp(prefix="viaduct-bench-")
    best = {name: 0 for name, _ in systems}
    cpu = {}
    procs = Procs()
    try:
        for rate in [int(r) for r in args.rates.split(",")]:
            for name, children in systems:  # alternate systems at each rate
                procs.start(["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(UAS), "-nostdin",
                             "-timeout", f"{args.seconds * 3 + 30}s"], stderr=subprocess.DEVNULL)
                proxy = start_viaduct(procs, tmp) if name == "viaduct" else start_kamailio(procs, tmp, children)
                time.sleep(1.0)
                c0 = tree_cpu(proxy.pid)
                r = run_load(rate, args.seconds, tmp)
                c1 = tree_cpu(proxy.pid)
                procs.stop_all()
                clean = r["failed"] == 0 and r["retrans"] == 0 and r["ok"] == r["calls"]
                us_per_call = (c1 - c0) / max(r["ok"], 1) * 1e6
                cpu[(name, rate)] = us_per_call
                print(f"{name:12} {rate:5}/s  ok={r['ok']:6} failed={r['failed']:5} retrans={r['retrans']:5} "
                      f"cpu/call={us_per_call:6.1f}us {'clean' if clean else 'NOT CLEAN'}", flush=True)
                if clean:
                    best[name] = max(best[name], rate)
                time.sleep(1.0)
    finally:
        procs.stop_all()
    print("\nhighest 0-failure, 0-retransmission rate (calls/s):")
    for name, _ in systems:
        print(f"  {name:12} {best[name]}")


if __name__ == "__main__":
    main()
