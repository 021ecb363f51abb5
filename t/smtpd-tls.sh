#!/bin/sh
# smtpd-lite and TLS: STARTTLS (RFC 3207) and implicit TLS (-L, -T), on
# the own listener and under tcpserver; Python's smtplib and ssl,
# openssl s_client, swaks. The state reset after STARTTLS and the
# plaintext-injection defence (CVE-2011-0411), TLS 1.2 minimum, the
# certificate re-read per connection, Received:, the chain's
# environment and the policy attributes. Loopback only.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
if ! command -v openssl >/dev/null; then skip "openssl not installed"; exit 0; fi
smtpd_setup "tls_cert cert.pem" "tls_key key.pem" "max_per_ip 50"
C="python3 $FIX/smtpd-tls.py"
cat >"$T/chain.sh" <<'EOF'
#!/bin/sh
cat >"$1/$MXID.msg" && env >"$1/$MXID.env"
EOF
chmod 755 "$T/chain.sh"
CH="$T/chain.sh $T/out"
mkcert() {	# mkcert CN: a fresh self-signed certificate and key in conf/
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
	    -keyout "$T/conf/key.new" -out "$T/conf/cert.new" 2>/dev/null || return 1
	# sessions run as the settings user (nobody): the key is group-readable
	if [ "$(id -u)" = 0 ]; then chgrp "$(id -gn nobody)" "$T/conf/key.new"; fi
	chmod 640 "$T/conf/key.new"
	mv "$T/conf/key.new" "$T/conf/key.pem" && mv "$T/conf/cert.new" "$T/conf/cert.pem"
}
ok "test certificate made with openssl req -x509" mkcert mx.example.com
printf 'policy exec:%s %s\n' "$FIX/smtpd-policy.sh" "$T/pol" >>"$T/conf/settings"
msgof() { cat "$(lastmsg)"; }
envof() { cat "$T/out/$(basename "$(lastmsg)" .msg).env"; }
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# ---- on a pipe: what EHLO says ----
out=$(talk "EHLO client.test\r\nQUIT\r\n")
like "$out" '^250-STARTTLS' "EHLO advertises STARTTLS when tls_cert is set"
nok "AUTH is not advertised (no auth table)" sh -c "echo '$out' | grep -q AUTH"
is "$(talk "EHLO c\r\nSTARTTLS now\r\nQUIT\r\n" | codes)" "220,250,501 5.5.4,221 2.0.0" "STARTTLS with an argument: 501 5.5.4"
is "$(talk "EHLO c\r\nMAIL FROM:<>\r\nSTARTTLS\r\nQUIT\r\n" | codes)" "220,250,250 2.1.0,503 5.5.1,221 2.0.0" \
	"STARTTLS inside a transaction: 503 5.5.1"

# ---- own listener: STARTTLS and implicit TLS (-L) ----
port=$(free_port) sport=$(free_port)
smtpd-lite -c "$T/conf" -l 127.0.0.1:$port -L 127.0.0.1:$sport $CH 2>>"$T/log" & lpid=$!
bg_pid $lpid
wait_port 127.0.0.1 $port && wait_port 127.0.0.1 $sport || echo "not ok - listener did not start"
out=$($C session starttls 127.0.0.1 $port --to alice@example.com)
like "$out" '^tls TLSv1\.[23] ' "listener: smtplib starttls(): TLS 1.2 or 1.3"
nok "after STARTTLS, EHLO no longer offers STARTTLS" sh -c "echo '$out' | grep '^ehlo' | grep -q STARTTLS"
like "$out" '^data 250 2\.0\.0 Ok' "listener: message accepted under STARTTLS"
like "$(msgof)" 'by mx\.example\.com \(smtpd-lite\) with ESMTPS id' "Received: with ESMTPS"
like "$(msgof)" '^	\(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \([0-9]+/[0-9]+ bits\)\)$' "Received: TLS version and cipher"
like "$(envof)" '^TLS_PROTOCOL=TLSv1\.[23]$' "chain environment: TLS_PROTOCOL"
like "$(envof)" '^TLS_CIPHER=[A-Z0-9_-]+$' "chain environment: TLS_CIPHER"
like "$(envof)" '^TLS_CIPHER_BITS=[0-9]+$' "chain environment: TLS_CIPHER_BITS"
pol=$(cat "$T/pol/log")
like "$pol" '^encryption_protocol=TLSv1\.[23]$' "policy: encryption_protocol after STARTTLS"
like "$pol" '^encryption_cipher=[A-Z0-9_-]+$' "policy: encryption_cipher"
like "$pol" '^encryption_keysize=[0-9]+$' "policy: encryption_keysize"
like "$pol" '^encryption_protocol=$' "policy: encryption_protocol empty before STARTTLS"
like "$(cat "$T/log")" 'tls ip=127\.0\.0\.1 protocol=TLSv1\.[23] cipher=' "handshake logged"

out=$($C session implicit 127.0.0.1 $sport --to alice@example.com)
like "$out" '^tls TLSv1\.[23] ' "listener -L: implicit TLS (python ssl)"
nok "implicit TLS: STARTTLS not offered" sh -c "echo '$out' | grep '^ehlo' | grep -q STARTTLS"
like "$out" '^data 250 2\.0\.0 Ok' "implicit TLS: message accepted"
like "$(msgof)" 'with ESMTPS id' "implicit TLS: Received: with ESMTPS"

# a big message and pipelining under TLS: many TLS records, replies in order
out=$($C session starttls 127.0.0.1 $port --to alice@example.com --size 3000000)
like "$out" '^data 250 2\.0\.0 Ok' "3 MB message under TLS accepted"
is "$(grep -c '^\.x\{76\}$' "$(lastmsg)")" 37974 "... every line arrived, dot-unstuffed"
if command -v swaks >/dev/null; then
	ok "swaks --tls --pipeline" swaks -S --tls --pipeline --server 127.0.0.1:$port --from bob@remote.test \
	    --to alice@example.com,bob@example.com
fi
like "$(sed -n '/^protocol_state=CONNECT/,/^--/p' "$T/pol/log" | grep '^encryption_protocol=TLS' | head -1)" \
	'^encryption_protocol=TLSv1' "implicit TLS: the CONNECT request already has encryption_protocol"

# state reset: after STARTTLS the client must greet again
out=$(python3 - 127.0.0.1 $port <<'EOF'
import smtplib, ssl, sys
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="c.test")
s.ehlo(); s.starttls(context=c)
print("mail", s.mail("bob@remote.test")[0])
s.ehlo()
print("starttls2", s.docmd("STARTTLS")[0])
print("mail", s.mail("bob@remote.test")[0])
s.quit()
EOF
)
like "$out" '^mail 503$' "after STARTTLS the HELO is forgotten: MAIL gets 503"
like "$out" '^starttls2 503$' "second STARTTLS: 503"
like "$out" '^mail 250$' "after a new EHLO under TLS: MAIL 250"

# plaintext pipelined after STARTTLS is thrown away (CVE-2011-0411)
out=$($C inject 127.0.0.1 $port 'RSET\r\n')
like "$out" '^starttls 220 2\.0\.0' "injection: STARTTLS answered 220"
like "$out" '^first 250-mx\.example\.com' "injection: the pipelined RSET is not answered under TLS"
is "$(echo "$out" | grep -c '^then 250 2\.0\.0')" 0 "injection: no reply to the injected RSET at all"
like "$(cat "$T/log")" '6 bytes of plaintext pipelined after STARTTLS discarded' "injection: discard logged"
out=$($C inject 127.0.0.1 $port 'MAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.com>\r\n')
like "$out" '^first 250-' "injection: pipelined MAIL/RCPT not executed"
nok "injection: no 250 2.1.x for injected commands" sh -c "echo '$out' | grep -q '2\.1\.[05]'"

# openssl s_client
if out=$(printf 'EHLO sclient.test\nQUIT\n' | timeout 10 openssl s_client -starttls smtp -crlf -quiet \
    -connect 127.0.0.1:$port 2>&1); then
	like "$out" '^250-AUTH|^250 ENHANCEDSTATUSCODES' "openssl s_client -starttls smtp: EHLO under TLS"
	like "$out" '^221 2\.0\.0' "openssl s_client -starttls smtp: QUIT"
else
	echo "not ok - openssl s_client -starttls smtp"; echo "$out" | sed 's/^/#   /' | head
fi
out=$(printf 'QUIT\n' | timeout 10 openssl s_client -crlf -quiet -connect 127.0.0.1:$sport 2>&1)
like "$out" '^220 mx\.example\.com ESMTP' "openssl s_client: implicit TLS greeting"
out=$(printf 'QUIT\n' | timeout 10 openssl s_client -tls1_2 -starttls smtp -crlf -connect 127.0.0.1:$port 2>&1)
like "$out" 'Protocol *: TLSv1\.2' "TLS 1.2 accepted"
nok "TLS 1.1 refused (TLS 1.2 minimum)" sh -c "printf 'QUIT\n' | timeout 10 openssl s_client -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' -starttls smtp -crlf -connect 127.0.0.1:$port"

if command -v swaks >/dev/null; then
	ok "swaks --tls" swaks -S --tls --server 127.0.0.1:$port --from bob@remote.test --to alice@example.com
	ok "swaks --tlsc (implicit TLS)" swaks -S --tlsc --server 127.0.0.1:$sport --from bob@remote.test --to alice@example.com
	nok "swaks --tls: relaying still refused without AUTH" swaks -S --tls --server 127.0.0.1:$port --from bob@remote.test --to x@elsewhere.test
else
	skip "swaks not installed"
fi

# a renewed certificate is used by the next connection, no restart
fp1=$($C fingerprint starttls 127.0.0.1 $port)
mkcert renewed.example.com
fp2=$($C fingerprint starttls 127.0.0.1 $port)
fp3=$($C fingerprint implicit 127.0.0.1 $sport)
like "$fp1" '^[0-9a-f]{64}$' "certificate fingerprint read"
nok "renewed certificate served without a restart (STARTTLS)" test "$fp1" = "$fp2"
is "$fp3" "$fp2" "renewed certificate served without a restart (implicit TLS)"

# a handshake that fails ends the session, logged with the address
out=$(python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5); f = s.makefile("rb")
f.readline(); s.sendall(b"EHLO x\r\n")
while f.readline()[3:4] == b"-": pass
s.sendall(b"STARTTLS\r\n"); print(f.readline().decode().strip())
s.sendall(b"this is not a TLS client hello\r\n\r\n")
try: s.recv(100)
except OSError: pass' $port)
like "$out" '^220 2\.0\.0' "garbage handshake: STARTTLS 220"
sleep 0.3
like "$(cat "$T/log")" 'tls handshake failed ip=127\.0\.0\.1' "failed handshake logged with the client address"
stop $lpid

# ---- trouble with the certificate ----
cp "$T/conf/settings" "$T/settings.keep"
echo "tls_cert missing.pem" >>"$T/conf/settings"
is "$(talk "EHLO c\r\nSTARTTLS\r\nNOOP\r\nQUIT\r\n" | codes)" "220,250,454 4.7.0,250 2.0.0,221 2.0.0" \
	"certificate unreadable: STARTTLS 454 4.7.0, the session goes on in plaintext"
like "$(cat "$T/log")" 'tls: cannot load the certificate .*missing\.pem' "certificate trouble logged"
cp "$T/settings.keep" "$T/conf/settings"
grep -v '^tls_' "$T/settings.keep" >"$T/conf/settings"
is "$(talk "EHLO c\r\nSTARTTLS\r\nQUIT\r\n" | codes)" "220,250,502 5.5.1,221 2.0.0" "no tls_cert: STARTTLS not implemented (502)"
nok "no tls_cert: not advertised" sh -c "talk 'EHLO c\r\nQUIT\r\n' | grep -q STARTTLS"
smtpd-lite -c "$T/conf" -L 127.0.0.1:$(free_port) 2>"$T/err.log"
is "$?" 111 "-L without tls_cert: exit 111"
like "$(cat "$T/err.log")" 'implicit TLS needs tls_cert' "... and says why"
cp "$T/settings.keep" "$T/conf/settings"

# ---- under tcpserver: STARTTLS, and -T for implicit TLS ----
if command -v tcpserver >/dev/null; then
	tport=$(free_port) tsport=$(free_port)
	tcpserver -R -H -l localhost 127.0.0.1 $tport smtpd-lite -c "$T/conf" $CH 2>>"$T/log" & tp1=$!
	bg_pid $tp1
	tcpserver -R -H -l localhost 127.0.0.1 $tsport smtpd-lite -T -c "$T/conf" $CH 2>>"$T/log" & tp2=$!
	bg_pid $tp2
	wait_port 127.0.0.1 $tport && wait_port 127.0.0.1 $tsport
	out=$($C session starttls 127.0.0.1 $tport --to alice@example.com)
	like "$out" '^data 250 ' "tcpserver: smtplib STARTTLS, message accepted"
	like "$(msgof)" 'with ESMTPS id' "tcpserver: Received: with ESMTPS"
	like "$($C session implicit 127.0.0.1 $tsport --to alice@example.com)" '^data 250 ' "tcpserver + smtpd-lite -T: implicit TLS"
	out=$(printf 'EHLO s\nQUIT\n' | timeout 10 openssl s_client -starttls smtp -crlf -quiet -connect 127.0.0.1:$tport 2>&1)
	like "$out" '^221 ' "tcpserver: openssl s_client -starttls smtp"
	like "$($C inject 127.0.0.1 $tport 'RSET\r\n')" '^first 250-' "tcpserver: injected RSET not answered"
	if command -v swaks >/dev/null; then
		ok "tcpserver: swaks --tls" swaks -S --tls --server 127.0.0.1:$tport --from bob@remote.test --to alice@example.com
	fi
	stop $tp1; stop $tp2
else
	skip "tcpserver (ucspi-tcp) not installed"
fi
