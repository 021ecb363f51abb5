#!/bin/sh
# bench/smtpd-tls-sessions.sh: memory per idle smtpd-lite session, plain
# vs STARTTLS vs implicit TLS, and the cost of a TLS session start.
#   1. N idle sessions of each kind (after EHLO; the TLS ones after the
#      handshake and a second EHLO) on the own listener (-l / -L); the
#      session processes' RSS, anonymous RSS and PSS (smaps_rollup),
#      averaged, in KiB (the relaycheck co-process is not counted: it is
#      the same for all three);
#   2. connect-EHLO-STARTTLS-EHLO-QUIT sessions per second vs plain
#      connect-EHLO-QUIT, CONC clients at once.
#
#   sh bench/smtpd-tls-sessions.sh        N=20 idle sessions, R=300 rate sessions
#   N=50 R=1000 CONC=4 sh bench/smtpd-tls-sessions.sh
#
# Loopback only, a private conf and a fresh RSA-2048 test certificate
# under /tmp; not part of `make test`.
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
export TOP
. "$TOP/t/lib.sh"
trap 'exit 1' INT TERM HUP PIPE	# so that lib.sh's EXIT trap stops our servers
N=${N:-20}
R=${R:-300}
CONC=${CONC:-4}
newconf
cat >>"$T/conf/settings" <<EOF
max_connections 1000
max_per_ip 1000
tls_cert cert.pem
tls_key key.pem
EOF
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.example.com \
    -keyout "$T/conf/key.pem" -out "$T/conf/cert.pem" 2>/dev/null || { echo "openssl req failed"; exit 1; }
[ "$(id -u)" = 0 ] && chgrp "$(id -gn nobody)" "$T/conf/key.pem"
chmod 640 "$T/conf/key.pem"

cat >"$T/client.py" <<'PY'
import socket, ssl, sys, threading, time
mode, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def rd(f):
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l
def open_session(kind):
    s = socket.create_connection(("127.0.0.1", port))
    if kind == "implicit":
        s = ctx.wrap_socket(s)
    f = s.makefile("rb")
    rd(f); s.sendall(b"EHLO bench.test\r\n"); rd(f)
    if kind == "starttls":
        s.sendall(b"STARTTLS\r\n"); rd(f)
        s = ctx.wrap_socket(s); f = s.makefile("rb")
        s.sendall(b"EHLO bench.test\r\n"); rd(f)
    return s, f
if mode == "idle":
    kind, n = sys.argv[3], int(sys.argv[4])
    held = [open_session(kind) for _ in range(n)]
    print("ready", flush=True)
    sys.stdin.readline()
    for s, f in held:
        s.sendall(b"QUIT\r\n"); rd(f); s.close()
    sys.exit(0)
kind, n, conc = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
per = n // conc
errors = []
def worker():
    for _ in range(per):
        try:
            s, f = open_session(kind)
            s.sendall(b"QUIT\r\n"); rd(f); s.close()
        except Exception as e:
            errors.append(e)
t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(conc)]
for t in ts: t.start()
for t in ts: t.join()
dt = time.time() - t0
print("%-9s %d sessions in %.2f s: %.0f sessions/s (%d errors)" % (kind, per * conc, dt, per * conc / dt, len(errors)))
PY

port=$(free_port) sport=$(free_port)
smtpd-lite -q -c "$T/conf" -l 127.0.0.1:$port -L 127.0.0.1:$sport cat 2>/dev/null & lpid=$!
bg_pid $lpid
wait_port 127.0.0.1 $port && wait_port 127.0.0.1 $sport || { echo "listener did not start"; exit 1; }

field() { awk -v k="$1" '$1 == k":" {print $2}' "$2" 2>/dev/null; }
# idle KIND PORT: N sessions held open; average RSS / RssAnon / PSS of the sessions
idle() {
	rm -f "$T/go"; mkfifo "$T/go"
	python3 "$T/client.py" idle $2 $1 $N <"$T/go" >"$T/idle.out" &
	cpid=$!
	exec 9>"$T/go"
	i=0; until grep -q ready "$T/idle.out" 2>/dev/null || [ $i -gt 300 ]; do sleep 0.1; i=$((i + 1)); done
	sleep 0.3
	pids=$(ps -o pid= --ppid $lpid)
	n=0 rss=0 anon=0 pss=0
	for p in $pids; do
		r=$(field VmRSS /proc/$p/status) a=$(field RssAnon /proc/$p/status) s=$(field Pss /proc/$p/smaps_rollup)
		[ -n "$r" ] || continue
		n=$((n + 1)) rss=$((rss + r)) anon=$((anon + a)) pss=$((pss + ${s:-0}))
	done
	if [ $n -gt 0 ]; then
		printf '%-9s %3d sessions: RSS %5d  RssAnon %5d  PSS %5d KiB per session\n' $1 $n \
		    $((rss / n)) $((anon / n)) $((pss / n))
	else
		echo "$1: no session processes found"
	fi
	echo >&9; exec 9>&-
	wait $cpid
	sleep 0.3
}

echo "== idle session memory (session process only; $N sessions each)"
idle plain $port
idle starttls $port
idle implicit $sport
echo "== session rate (CONC=$CONC)"
python3 "$T/client.py" rate $port plain $R $CONC
python3 "$T/client.py" rate $port starttls $R $CONC
python3 "$T/client.py" rate $sport implicit $R $CONC
