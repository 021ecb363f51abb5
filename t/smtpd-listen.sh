#!/bin/sh
# smtpd-lite over TCP: its own listener (-l, IPv4 and IPv6, limits,
# SIGTERM), under Debian's tcpserver and under systemd-socket-activate
# (inetd style); real clients: Python's smtplib and swaks.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
smtpd_setup "max_connections 3" "max_per_ip 2"
C="$FIX/smtpd-clients.py"
envof() { cat "$T/out/$(basename "$(lastmsg)" .msg).env"; }

# ---- own listener ----
port=$(free_port)
smtpd-lite -c "$T/conf" -l 127.0.0.1:$port $CHAIN "$T/out" 2>>"$T/log" & lpid=$!
bg_pid $lpid
wait_port 127.0.0.1 $port || echo "not ok - listener did not start"
like "$(python3 "$C" send 127.0.0.1 $port)" '^250 2\.0\.0 Ok [0-9A-F]+$' "listener: smtplib message accepted"
like "$(cat "$(lastmsg)")" '^\.leading dot$' "listener: smtplib's dot-stuffing undone"
env=$(envof)
like "$env" '^TCPREMOTEIP=127\.0\.0\.1$' "listener: TCPREMOTEIP set for the session"
like "$env" "^TCPLOCALPORT=$port\$" "listener: TCPLOCALPORT set"
like "$env" '^TCPLOCALIP=127\.0\.0\.1$' "listener: TCPLOCALIP set"
like "$env" '^PROTO=TCP$' "listener: PROTO=TCP"
like "$env" '^TCPREMOTEPORT=[0-9]+$' "listener: TCPREMOTEPORT set"
if [ "$(id -u)" = 0 ]; then
	nok "listener started as root: sessions are not root" grep -q '^UID=0$' "$(ls -t "$T"/out/*.env | head -1)"
	like "$(ps -o user= -p $lpid)" 'nobody' "listener itself runs as the settings user after bind"
fi
if command -v swaks >/dev/null; then
	ok "listener: swaks" swaks -S --server 127.0.0.1:$port --helo client.test --from bob@remote.test --to alice@example.com
	ok "listener: swaks with pipelining" swaks -S --pipeline --server 127.0.0.1:$port --from bob@remote.test --to bob@example.com
	nok "listener: swaks to a foreign domain is refused" swaks -S --server 127.0.0.1:$port --from bob@remote.test --to x@elsewhere.test
else
	skip "swaks not installed"
fi
like "$(python3 "$C" greet 127.0.0.1 $port 127.0.0.3)" '^554 5\.7\.1 ' "listener: denied client (from 127.0.0.3) gets 554 5.7.1"
like "$(python3 "$C" send 127.0.0.1 $port 127.0.0.2)" '^250 ' "listener: relay client from 127.0.0.2"
like "$(envof)" '^TCPREMOTEIP=127\.0\.0\.2$' "listener: the relay client's address reaches the chain"
out=$(python3 "$C" limits $port | tr '\n' '|')
like "$out" '^a0 220\|a1 220\|a3 421 4\.7\.0 [^|]*from your address' "listener: per-IP limit 2: third from one address gets 421 4.7.0"
like "$out" '\|b1 220\|c1 421 4\.7\.0 [^|]*too many connections' "listener: global limit 3: 421 4.7.0"
like "$out" '\|d1 220\|$' "listener: slots freed when sessions end (children reaped)"
kill -TERM $lpid
i=0; while kill -0 $lpid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
nok "listener ends on SIGTERM" kill -0 $lpid
wait $lpid; is "$?" 0 "listener exit status 0 after SIGTERM"
like "$(cat "$T/log")" 'SIGTERM: listener closed' "SIGTERM logged"
like "$(cat "$T/log")" 'refused ip=127\.0\.0\.1: too many connections from your address' "refusals logged"

# IPv6
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
	port6=$(free_port)
	smtpd-lite -c "$T/conf" -l "[::1]:$port6" $CHAIN "$T/out" 2>>"$T/log" & bg_pid $!
	i=0; until python3 -c "import socket; socket.create_connection(('::1',$port6),0.2).close()" 2>/dev/null || [ $i -gt 50 ]; do sleep 0.1; i=$((i+1)); done
	like "$(python3 "$C" send ::1 $port6)" '^250 2\.0\.0 Ok ' "listener on [::1]: smtplib over IPv6"
	like "$(envof)" '^TCPREMOTEIP=::1$' "IPv6 client address in TCPREMOTEIP"
	like "$(sed -n 1p "$(lastmsg)")" '\[IPv6:::1\]\)$' "IPv6 address literal in Received: ([IPv6:::1])"
else
	skip "no IPv6 loopback"
fi

nok "bad -l argument is refused" smtpd-lite -c "$T/conf" -l nonsense
if [ "$(id -u)" = 0 ]; then
	cp "$T/conf/settings" "$T/settings.keep"
	echo "user root" >>"$T/conf/settings"
	printf 'QUIT\r\n' | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" >/dev/null 2>"$T/root.log"
	is "$?" 111 "settings user root: refuses to handle mail (exit 111)"
	like "$(cat "$T/root.log")" 'refusing to handle mail as root' "refusal says why"
	cp "$T/settings.keep" "$T/conf/settings"
fi

# ---- under tcpserver ----
if command -v tcpserver >/dev/null; then
	tport=$(free_port)
	tcpserver -R -H -l localhost 127.0.0.1 $tport smtpd-lite -c "$T/conf" $CHAIN "$T/out" 2>>"$T/log" & bg_pid $!
	wait_port 127.0.0.1 $tport || echo "not ok - tcpserver did not start"
	like "$(python3 "$C" send 127.0.0.1 $tport)" '^250 2\.0\.0 Ok ' "tcpserver: smtplib message accepted"
	like "$(envof)" '^TCPREMOTEIP=127\.0\.0\.1$' "tcpserver: TCPREMOTEIP passed on"
	ok "tcpserver: swaks" swaks -S --server 127.0.0.1:$tport --from bob@remote.test --to alice@example.com
	ok "tcpserver: swaks with pipelining" swaks -S --pipeline --server 127.0.0.1:$tport --from '<>' --to carol@example.com
	like "$(python3 "$C" greet 127.0.0.1 $tport 127.0.0.3)" '^554 5\.7\.1 ' "tcpserver: denied client gets 554 5.7.1"
	nok "tcpserver: swaks relay attempt refused" swaks -S --server 127.0.0.1:$tport --from bob@remote.test --to x@elsewhere.test
	# tcprules setting RELAYCLIENT for one address: honoured (by relaycheck)
	printf '127.0.0.4:allow,RELAYCLIENT=""\n:allow\n' | tcprules "$T/tcp.cdb" "$T/tcp.tmp"
	rport=$(free_port)
	tcpserver -R -H -l localhost -x "$T/tcp.cdb" 127.0.0.1 $rport smtpd-lite -c "$T/conf" $CHAIN "$T/out" 2>>"$T/log" & bg_pid $!
	wait_port 127.0.0.1 $rport
	ok "tcpserver -x: RELAYCLIENT from tcprules lets 127.0.0.4 relay" python3 "$C" send 127.0.0.1 $rport 127.0.0.4 x@elsewhere.test
	nok "tcpserver -x: 127.0.0.1 (no RELAYCLIENT) still may not relay" python3 "$C" send 127.0.0.1 $rport 127.0.0.1 x@elsewhere.test
else
	skip "tcpserver (ucspi-tcp) not installed"
fi

# ---- inetd / systemd style: no TCP* variables, getpeername(0) ----
if command -v systemd-socket-activate >/dev/null; then
	sport=$(free_port)
	env -u TCPREMOTEIP systemd-socket-activate -l 127.0.0.1:$sport -a --inetd \
	    "$BIN/smtpd-lite" -c "$T/conf" $CHAIN "$T/out" 2>>"$T/log" & bg_pid $!
	wait_port 127.0.0.1 $sport
	like "$(python3 "$C" send 127.0.0.1 $sport)" '^250 2\.0\.0 Ok ' "inetd style (systemd-socket-activate --inetd): accepted"
	like "$(envof)" '^TCPREMOTEIP=127\.0\.0\.1$' "inetd style: client address from the socket"
	like "$(python3 "$C" greet 127.0.0.1 $sport 127.0.0.3)" '^554 5\.7\.1 ' "inetd style: denied client by socket address"
else
	skip "systemd-socket-activate not available"
fi
# inetd gives the socket as fd 0, 1 and 2: no log line may reach the client.
out=$(python3 -c '
import socket, subprocess, sys, os
a, b = socket.socketpair()
env = dict(os.environ, TCPREMOTEIP="127.0.0.1")
p = subprocess.Popen(sys.argv[1:], stdin=b, stdout=b, stderr=b, env=env)
b.close()
a.sendall(b"EHLO x\r\nFOO\r\nQUIT\r\n")
data = b""
while True:
    d = a.recv(4096)
    if not d: break
    data += d
p.wait()
sys.stdout.write(data.decode("latin-1"))
' smtpd-lite -c "$T/conf" $CHAIN "$T/out")
is "$(echo "$out" | codes)" "220,250,500 5.5.2,221 2.0.0" "stderr on the client socket (inetd): replies only, no log lines"
is "$(printf 'QUIT\r\n' | env -u TCPREMOTEIP REMOTE_ADDR=127.0.0.3 smtpd-lite -c "$T/conf" 2>/dev/null | codes)" "554 5.7.1,221 2.0.0" \
	"systemd Accept=yes: REMOTE_ADDR used when TCPREMOTEIP is unset"
