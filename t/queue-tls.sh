# mxqueue: opportunistic STARTTLS as a client (issue 8). The peer is our
# own smtpd-lite with a certificate made by the test (openssl req): the
# message arrives "with ESMTPS" and the runner logs version and cipher.
# A peer without STARTTLS gets it in plain text. A peer that offers
# STARTTLS and then refuses it, breaks the handshake (garbage, close) or
# sends plaintext after its 220: never plain text on that connection,
# the message stays queued (4.7.0). queue_tls no: plain even when
# offered. queue_tls_ca_file: routes need a verified certificate.
# Loopback only.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
if [ ! -x "$BIN/smtpd-lite" ]; then skip "smtpd-lite not built"; exit 0; fi
if ! command -v openssl >/dev/null; then skip "openssl not installed"; exit 0; fi
qconf
FIX=$TOP/t/fixtures
stop() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null; return 0; }
msgs() { ls "$1" 2>/dev/null | grep -c '\.msg$'; }

# peer configuration: a copy of ours that lets loopback relay, chain
# output in $T/outN (the fixture chain)
mkdir -p "$T/peer"
chmod 755 "$T/peer"
cp "$C"/settings "$C"/access "$C"/domains "$C"/backup "$C"/mailboxes "$T/peer/" 2>/dev/null
echo "127.0.0.0/8 relay" >"$T/peer/access"
sed -i '/^hostname /d' "$T/peer/settings"
echo "hostname peer.test" >>"$T/peer/settings"
mkcdb -c "$T/peer" >/dev/null
chmod -R a+rX "$T/peer"
mkcert() {	# mkcert NAME CN: cert and key in $T/peer (SAN localhost and 127.0.0.1)
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$2" \
	    -addext "subjectAltName=DNS:$2,IP:127.0.0.1" \
	    -keyout "$T/peer/$1.key" -out "$T/peer/$1.pem" 2>/dev/null || return 1
	# smtpd-lite sessions run as the settings user (nobody)
	if [ "$(id -u)" = 0 ]; then chgrp "$(id -gn nobody)" "$T/peer/$1.key"; fi
	chmod 640 "$T/peer/$1.key"
}
ok "test certificate made with openssl req -x509" mkcert peer localhost
mkcert other other.test
# two peer configurations: with the certificate, and without (plain)
cp -r "$T/peer" "$T/peerplain"
printf 'tls_cert peer.pem\ntls_key peer.key\n' >>"$T/peer/settings"
mkdir -p "$T/out1" "$T/out2"
chmod 777 "$T/out1" "$T/out2"

PT=$(free_port) PP=$(free_port) PB=$(free_port)
smtpd-lite -c "$T/peer" -l "127.0.0.1:$PT" "$FIX/smtpd-chain.sh" "$T/out1" 2>"$T/peer.log" &
TPID=$!; bg_pid $TPID
smtpd-lite -c "$T/peerplain" -l "127.0.0.1:$PP" "$FIX/smtpd-chain.sh" "$T/out2" 2>"$T/peerplain.log" &
PPID_=$!; bg_pid $PPID_
wait_port 127.0.0.1 "$PT" || echo "not ok - TLS peer listens"
wait_port 127.0.0.1 "$PP" || echo "not ok - plain peer listens"

# a peer that offers STARTTLS and then fails it, as $T/badmode says:
# refuse (454), garbage (220, then bytes that are no TLS), close (220,
# then close), plaintext (220 and a plaintext line in the same write)
cat >"$T/badtls.py" <<'EOF'
import socket, sys, threading
port, logf, modef = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(16)
def log(line):
    with open(logf, "a") as f:
        f.write(line + "\n")
def serve(c):
    mode = open(modef).read().strip()
    f = c.makefile("rb")
    c.sendall(b"220 bad.test ESMTP\r\n")
    while True:
        line = f.readline()
        if not line:
            break
        line = line.decode("latin-1").rstrip("\r\n")
        log(line)
        cmd = line.split(" ")[0].upper()
        if cmd == "EHLO":
            c.sendall(b"250-bad.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
        elif cmd == "STARTTLS":
            if mode == "refuse":
                c.sendall(b"454 4.7.0 TLS not available due to temporary reason\r\n")
                continue
            if mode == "plaintext":
                c.sendall(b"220 2.0.0 go ahead\r\n250 injected\r\n")
            else:
                c.sendall(b"220 2.0.0 go ahead\r\n")
            if mode == "garbage":
                c.sendall(b"this is not a TLS record\r\n" * 4)
                f.read(1)
            break
        elif cmd == "QUIT":
            c.sendall(b"221 bye\r\n")
            break
        else:
            c.sendall(b"250 ok\r\n")
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
echo refuse >"$T/badmode"
python3 "$T/badtls.py" "$PB" "$T/bad.log" "$T/badmode" 2>"$T/bad.err" &
bg_pid $!
wait_port 127.0.0.1 "$PB" || echo "not ok - bad peer listens"

printf 'tls.test [127.0.0.1]:%s\nplain.test [127.0.0.1]:%s\nbad.test [127.0.0.1]:%s\n' \
    "$PT" "$PP" "$PB" >"$C/routes"
mkcdb -c "$C" >/dev/null
chmod -R a+rX "$C"

# 1. STARTTLS offered: used; the peer says ESMTPS
qadd bob@example.com x@tls.test
qrun
is "$(msgs "$T/out1")" 1 "TLS peer: delivered"
is "$(qn)" 0 "TLS peer: the queue is empty"
f=$(ls "$T"/out1/*.msg 2>/dev/null | head -n 1)
ok "peer's Received: from our EHLO name" grep -q '^Received: from mx\.example\.com' "$f"
like "$(grep -A3 '^Received:' "$f" 2>/dev/null | head -n 4)" 'by peer\.test \(smtpd-lite\) with ESMTPS id' "peer's Received: says with ESMTPS"
like "$(grep -A3 '^Received:' "$f" 2>/dev/null | head -n 4)" 'using TLSv1\.[23] with cipher' "peer's Received: TLS version and cipher"
ok "the text arrives intact (dot line)" grep -q '^\.leading dot$' "$f"
ok "the text arrives intact (last line)" grep -q '^last line$' "$f"
like "$(cat "$T/run.log")" '127\.0\.0\.1\[127\.0\.0\.1\]: STARTTLS: TLSv1\.[23] cipher [A-Z0-9_-]+' "runner logs the handshake"
like "$(cat "$T/run.log")" ': 1 accepted of 1 \(TLSv1\.[23] cipher [A-Z0-9_-]+\): 250' "the delivery log line has version and cipher"
like "$(cat "$T/peer.log")" 'tls ip=127\.0\.0\.1 protocol=TLSv1\.[23]' "the peer logged the handshake"
nok "no certificate check by default (self-signed accepted)" grep -q 'not verified' "$T/run.log"

# 2. STARTTLS not offered: plain text
: >"$T/run.log"
qadd bob@example.com y@plain.test
qrun
is "$(msgs "$T/out2")" 1 "plain peer: delivered in plain text"
is "$(qn)" 0 "plain peer: the queue is empty"
f=$(ls "$T"/out2/*.msg 2>/dev/null | head -n 1)
like "$(grep '^Received:' "$f" 2>/dev/null; grep -A2 '^Received:' "$f" 2>/dev/null)" 'with ESMTP id' "plain peer's Received: says with ESMTP"
like "$(cat "$T/run.log")" ': 1 accepted of 1 \(no TLS\): 250' "the log says no TLS"

# 3. STARTTLS offered but refused (454): no plain fallback, deferred
: >"$T/run.log"; : >"$T/bad.log"
qadd bob@example.com z@bad.test
id=$(ls "$Q/info")
qrun
is "$(qn)" 1 "STARTTLS refused: the message stays queued"
is "$(grep -c '^MAIL' "$T/bad.log")" 0 "STARTTLS refused: no MAIL FROM in plain text"
is "$(grep -c '^STARTTLS' "$T/bad.log")" 1 "STARTTLS was tried"
like "$(grep 'z@bad.test' "$Q/info/$id" | cut -f 2)" '^pending$' "STARTTLS refused: recipient pending (temporary)"
like "$(grep 'z@bad.test' "$Q/info/$id" | cut -f 12)" '^4\.7\.0 STARTTLS offered but refused, not sent in plain text: .*454' "the reason is kept (4.7.0 with the 454)"
like "$(cat "$T/run.log")" 'STARTTLS offered but refused' "... and logged"

# 4. handshake fails mid-way: garbage, close, plaintext after the 220
for m in garbage close plaintext; do
	echo $m >"$T/badmode"
	: >"$T/run.log"; : >"$T/bad.log"
	sleep 1.1
	mxqueue -c "$C" flush >/dev/null 2>&1
	qrun
	is "$(qn)" 1 "handshake $m: the message stays queued"
	is "$(grep -c '^MAIL' "$T/bad.log")" 0 "handshake $m: no MAIL FROM in plain text"
	is "$(grep -c '^STARTTLS' "$T/bad.log")" 1 "handshake $m: STARTTLS was tried once"
	like "$(grep 'z@bad.test' "$Q/info/$id" | cut -f 2,12 | tr '\t' ' ')" \
	    '^pending 4\.7\.0 127\.0\.0\.1\[127\.0\.0\.1\]: (TLS handshake failed \(.+\), not sent in plain text|plain text after the 220 to STARTTLS)' \
	    "handshake $m: pending with a 4.7.0 reason"
	like "$(cat "$T/run.log")" '4\.7\.0 .*(handshake failed|after the 220)' "handshake $m: logged"
done
# the peer gets TLS going again (the route now points at the good peer)
sed -i "s/^bad.test .*/bad.test [127.0.0.1]:$PT/" "$C/routes"
mkcdb -c "$C" >/dev/null
sleep 1.1; mxqueue -c "$C" flush >/dev/null 2>&1; qrun
is "$(qn)" 0 "a later try at a working TLS server delivers it"
is "$(msgs "$T/out1")" 2 "... over TLS"

# 5. queue_tls no: plain even when STARTTLS is offered
qset "queue_tls no"
qadd bob@example.com w@tls.test
qrun
is "$(qn)" 0 "queue_tls no: delivered"
f=$(ls -t "$T"/out1/*.msg | head -n 1)
like "$(grep -A3 '^Received:' "$f" | head -n 4)" 'with ESMTP id' "queue_tls no: plain (with ESMTP)"
qset "queue_tls maybe"
nok "queue_tls: a bad value is refused" mxqueue -c "$C" list
like "$(mxqueue -c "$C" list 2>&1)" 'expected no or opportunistic for queue_tls' "... with a reason"
qset "queue_tls opportunistic"

# 6. queue_tls_ca_file: routes need a verified certificate
qset "queue_tls_ca_file $T/peer/peer.pem"
: >"$T/run.log"
qadd bob@example.com v@tls.test
qrun
is "$(qn)" 0 "CA file: the route's certificate verifies (IP 127.0.0.1 in its SAN)"
like "$(cat "$T/run.log")" 'STARTTLS: TLSv1\.[23] cipher [A-Z0-9_-]+ verified' "logged as verified"
qset "queue_tls_ca_file $T/peer/other.pem"
: >"$T/run.log"
qadd bob@example.com u@tls.test
qrun
is "$(qn)" 1 "CA file: a certificate from another CA is not accepted"
like "$(cat "$T/run.log")" 'TLS handshake failed \(certificate not verified: ' "... the verify error is logged"
mxqueue -c "$C" remove $(ls "$Q/info") >/dev/null 2>&1
qadd bob@example.com t@plain.test
qrun
is "$(qn)" 1 "CA file: a route without STARTTLS is not used in plain text"
like "$(cat "$T/run.log")" '4\.7\.10 .*STARTTLS not offered' "... 4.7.10 logged"
mxqueue -c "$C" remove $(ls "$Q/info") >/dev/null 2>&1
qset "queue_tls_ca_file"

stop "$TPID"; stop "$PPID_"
