#!/usr/bin/env bash
# Starts the "TLS out" Kamailio of this directory by hand, the way a test does:
# a fresh self-signed certificate (IP SAN 127.0.0.1) in a temp dir, Kamailio in
# the foreground with that dir as runtime dir, PID file and working dir.
#
#   tests/peers/kamailio-tls/run-example.sh [KAMAILIO ARGS...]   # Ctrl-C (or kill PID) stops it
#   e.g. run-example.sh -A SIPP_BUILTIN_COMPAT      (SIPp built-in uac through stunnel)
#
# Environment (defaults): TLS_PORT=5061 UDP_PORT=5062 NEXT_HOP=sip:127.0.0.1:5070
#   LOG_REQUESTS=1 (one log line per request), KEEP=1 (keep the temp dir)
# Prints the temp dir, the CA file for clients (the certificate itself) and
# Kamailio's PID, then Kamailio's log (stderr) follows.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tls_port=${TLS_PORT:-5061}
udp_port=${UDP_PORT:-5062}
next_hop=${NEXT_HOP:-sip:127.0.0.1:5070}

command -v kamailio >/dev/null || { echo "kamailio missing: apt-get install -y kamailio kamailio-tls-modules" >&2; exit 1; }
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || { echo "tls.so missing: apt-get install -y kamailio-tls-modules" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl missing: apt-get install -y openssl" >&2; exit 1; }

dir=$(mktemp -d /tmp/kamailio-tls.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# RSA 2048 self-signed server certificate: IP SAN 127.0.0.1, CA:FALSE (rustls/
# webpki refuses a CA certificate as the end-entity certificate; openssl req
# -x509 marks it CA:TRUE unless told otherwise).
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
    -addext "extendedKeyUsage=serverAuth" 2>/dev/null

args=(-f "$here/kamailio.cfg" -DD -E -Y "$dir" -P "$dir/k.pid" -w "$dir"
      -A "TLS_PORT=$tls_port" -A "UDP_PORT=$udp_port"
      -A "NEXT_HOP=\"$next_hop\""
      -A "TLS_CERT=\"$dir/cert.pem\"" -A "TLS_KEY=\"$dir/key.pem\"")
[ "${LOG_REQUESTS:-1}" = 1 ] && args+=(-A LOG_REQUESTS)
args+=("$@")

echo "dir:      $dir"
echo "CA file:  $dir/cert.pem"
echo "command:  kamailio ${args[*]}"
kamailio "${args[@]}" &
pid=$!
echo "PID:      $pid"
echo "listens:  tls:127.0.0.1:$tls_port -> (from udp:127.0.0.1:$udp_port) $next_hop"
echo "try:      sipp -sf tests/peers/pjsua/uas_rr.xml -i 127.0.0.1 -p ${next_hop##*:} -nostdin   # callee echoing Record-Route"
echo "          \$(tests/peers/pjsua/install) tests/peers/pjsua/tls_call.py --proxy 127.0.0.1:$tls_port \\"
echo "              --target sip:user@127.0.0.1:${next_hop##*:} --calls 10 --ca $dir/cert.pem"
wait "$pid"
