#!/bin/sh
# bench/smtpd-sessions.sh: smtpd-lite's cost per connection.
#   1. resident memory of one idle session process (after EHLO), and of
#      its relaycheck co-process; target: session under 1 MiB RSS;
#   2. connect-EHLO-QUIT sessions per second, under Debian's tcpserver
#      and under smtpd-lite's own listener (-l), CONC clients at once.
#
#   sh bench/smtpd-sessions.sh            N=2000 sessions, CONC=4
#   N=500 CONC=8 sh bench/smtpd-sessions.sh
#
# Loopback only, a private conf under /tmp; not part of `make test`.
# tcpserver gets -l localhost: without it, it looks up the local host
# name in DNS for every connection, which dominates (and, with no
# resolver, costs about 100 ms a session).
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
export TOP
. "$TOP/t/lib.sh"
trap 'exit 1' INT TERM HUP PIPE	# so that lib.sh's EXIT trap stops our servers
N=${N:-2000}
CONC=${CONC:-4}
newconf
echo "max_connections 1000" >>"$T/conf/settings"
echo "max_per_ip 1000" >>"$T/conf/settings"

cat >"$T/client.py" <<'PY'
import socket, sys, threading, time
mode, port = sys.argv[1], int(sys.argv[2])
def rd(f):
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l
def session():
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    rd(f); s.sendall(b"EHLO bench.test\r\n"); rd(f)
    s.sendall(b"QUIT\r\n"); rd(f); s.close()
if mode == "idle":
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    rd(f); s.sendall(b"EHLO bench.test\r\n"); rd(f)
    print("ready", flush=True)
    sys.stdin.readline()
    s.sendall(b"QUIT\r\n"); rd(f)
    sys.exit(0)
n, conc = int(sys.argv[3]), int(sys.argv[4])
per = n // conc
errors = []
def worker():
    for _ in range(per):
        try:
            session()
        except Exception as e:
            errors.append(e)
t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(conc)]
for t in ts: t.start()
for t in ts: t.join()
dt = time.time() - t0
print("%d sessions in %.2f s: %.0f sessions/s (%d errors)" % (per * conc, dt, per * conc / dt, len(errors)))
PY

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
anon() { awk '/^RssAnon/ {print $2}' "/proc/$1/status" 2>/dev/null; }
pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null; }

# start SERVER-PID-VAR PORT: wait until it listens
lport=$(free_port)
smtpd-lite -q -c "$T/conf" -l 127.0.0.1:$lport cat 2>/dev/null & lpid=$!
bg_pid $lpid
tport=$(free_port)
tcpserver -R -H -l localhost -c 1000 127.0.0.1 $tport smtpd-lite -q -c "$T/conf" cat 2>/dev/null & tpid=$!
bg_pid $tpid
wait_port 127.0.0.1 $lport && wait_port 127.0.0.1 $tport || { echo "servers did not start"; exit 1; }

echo "== idle session memory (after EHLO), KiB"
mkfifo "$T/go"
python3 "$T/client.py" idle $lport <"$T/go" >"$T/idle.out" &
cpid=$!
exec 3>"$T/go"
while ! grep -q ready "$T/idle.out" 2>/dev/null; do sleep 0.05; done
spid=$(pgrep -P $lpid | head -1)
for p in "session $spid" $(for c in $(pgrep -P "$spid"); do echo "$(cat /proc/$c/comm)-p:$c"; done) "listener $lpid"; do
	set -- $(echo "$p" | tr ':' ' ')
	printf '%-13s pid %-7s RSS %5s  private (RssAnon) %4s  PSS %4s\n' "$1" "$2" "$(rss "$2")" "$(anon "$2")" "$(pss "$2")"
done
echo "(RSS is mostly libc's shared pages; RssAnon/PSS is what one more session costs)"
echo >&3; exec 3>&-; wait $cpid

echo "== connect-EHLO-QUIT, $N sessions, $CONC at once (alternating, twice each)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2; do
	printf 'smtpd-lite -l:    '; python3 "$T/client.py" rate $lport "$N" "$CONC"
	printf 'tcpserver -RHl:   '; python3 "$T/client.py" rate $tport "$N" "$CONC"
done
echo "(each session also starts relaycheck -p, and ruleproc -p when conf/rules exists, as policy co-processes)"
