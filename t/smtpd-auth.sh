#!/bin/sh
# smtpd-lite and SMTP AUTH (RFC 4954): the auth table (mkauth, mkcdb),
# PLAIN and LOGIN under TLS, relaying for an authenticated user from an
# address the access table only allows (127.0.0.1), refusals (no AUTH,
# wrong password, AUTH before TLS), failure limit and delay, submission
# mode (-m), the senders table, sasl_username for the policy services,
# Received:, AUTH_USER for the chain. Loopback only.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
if ! command -v openssl >/dev/null; then skip "openssl not installed"; exit 0; fi
smtpd_setup "tls_cert cert.pem" "tls_key key.pem" "max_per_ip 50" "auth_failure_delay 0"
C="python3 $FIX/smtpd-tls.py"
cat >"$T/chain.sh" <<'EOF'
#!/bin/sh
cat >"$1/$MXID.msg" && env >"$1/$MXID.env"
EOF
chmod 755 "$T/chain.sh"
CH="$T/chain.sh $T/out"
grp=$(id -gn nobody 2>/dev/null || id -gn)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mx.example.com" \
    -keyout "$T/conf/key.pem" -out "$T/conf/cert.pem" 2>/dev/null
[ "$(id -u)" = 0 ] && chgrp "$grp" "$T/conf/key.pem"
chmod 640 "$T/conf/key.pem"
printf 'policy exec:%s %s\n' "$FIX/smtpd-policy.sh" "$T/pol" >>"$T/conf/settings"
msgof() { cat "$(lastmsg)"; }
envof() { cat "$T/out/$(basename "$(lastmsg)" .msg).env"; }
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
b64() { printf "$1" | base64 -w0; }

# ---- the auth table ----
like "$(mkauth -h)" '^usage: mkauth ' "mkauth -h prints the usage"
out=$(echo 'correct horse' | mkauth -c "$T/conf" -s alice@example.com)
like "$out" 'added user alice@example.com' "mkauth -s adds a user"
like "$out" 'rebuilt: .*auth\.cdb' "mkauth rebuilds auth.cdb"
echo 'battery staple' | mkauth -c "$T/conf" -s -6 carol >/dev/null
echo 'bob pw' | mkauth -c "$T/conf" -s bob >/dev/null
like "$(grep '^alice@example.com ' "$T/conf/auth")" ' \$y\$' "yescrypt by default"
like "$(grep '^carol ' "$T/conf/auth")" ' \$6\$' "-6: SHA-512-crypt"
is "$(stat -c %a "$T/conf/auth")" 640 "auth (text) is not world-readable"
is "$(stat -c %a "$T/conf/auth.cdb")" 640 "auth.cdb is not world-readable"
# sessions run as nobody: give the table to its group; rebuilds keep it
if [ "$(id -u)" = 0 ]; then
	chgrp "$grp" "$T/conf/auth.cdb"
	echo 'x' | mkauth -c "$T/conf" -s tmpuser >/dev/null
	is "$(stat -c %G "$T/conf/auth.cdb")" "$grp" "a rebuild keeps auth.cdb's group"
	mkauth -c "$T/conf" -d tmpuser >/dev/null
	nok "mkauth -d removes a user" grep -q '^tmpuser ' "$T/conf/auth"
fi
nok "mkauth: bad user name refused" sh -c "echo x | mkauth -c '$T/conf' -s 'a b'"
nok "mkauth: empty password refused" sh -c "echo | mkauth -c '$T/conf' -s dave"
nok "mkauth without a terminal and without -s fails" sh -c "mkauth -c '$T/conf' dave </dev/null"
cp "$T/conf/auth" "$T/auth.keep"
cp "$T/conf/auth.cdb" "$T/auth.cdb.keep"
echo 'mallory $1$abc$0123456789012345678901' >>"$T/conf/auth"
out=$(mkcdb -c "$T/conf" auth 2>&1); rc=$?
is "$rc" 100 "mkcdb: an MD5-crypt hash is refused (exit 100)"
like "$out" 'auth:[0-9]+: password hash must be yescrypt' "... with file:line and the reason"
cmp -s "$T/conf/auth.cdb" "$T/auth.cdb.keep"; is "$?" 0 "... and the old auth.cdb stays"
cp "$T/auth.keep" "$T/conf/auth"; echo 'mallory plaintextpassword' >>"$T/conf/auth"
nok "mkcdb: a plain-text password is refused" mkcdb -c "$T/conf" auth
cp "$T/auth.keep" "$T/conf/auth"; echo 'mallory $6$saltsalt$' >>"$T/conf/auth"
nok "mkcdb: a salt without a hash is refused" mkcdb -c "$T/conf" auth
cp "$T/auth.keep" "$T/conf/auth"

# ---- on a pipe: AUTH needs TLS ----
out=$(talk "EHLO c\r\nAUTH PLAIN $(b64 '\0alice@example.com\0correct horse')\r\nQUIT\r\n")
nok "AUTH not advertised before TLS" sh -c "echo '$out' | grep -q '^250-AUTH'"
like "$out" '^538 5\.7\.11 ' "AUTH before TLS: 538 5.7.11 encryption required"
echo "auth_loopback_plaintext yes" >>"$T/conf/settings"
out=$(talk "EHLO c\r\nAUTH PLAIN $(b64 '\0alice@example.com\0correct horse')\r\nAUTH PLAIN $(b64 '\0alice@example.com\0correct horse')\r\nMAIL FROM:<alice@example.com> AUTH=<>\r\nRCPT TO:<x@elsewhere.test>\r\nQUIT\r\n")
like "$out" '^250-AUTH PLAIN LOGIN' "auth_loopback_plaintext: AUTH offered on loopback"
is "$(echo "$out" | codes)" "220,250,235 2.7.0,503 5.5.1,250 2.1.0,250 2.1.5,221 2.0.0" \
	"loopback AUTH PLAIN 235; AUTH twice 503; MAIL AUTH=<> accepted; relay allowed"
out=$(IP=198.51.100.7 talk "EHLO c\r\nAUTH PLAIN $(b64 '\0alice@example.com\0correct horse')\r\nQUIT\r\n")
like "$out" '^538 5\.7\.11 ' "not loopback: still 538 without TLS"
# the dialogues
L=$(b64 'alice@example.com') P=$(b64 'correct horse')
is "$(talk "EHLO c\r\nAUTH LOGIN\r\n$L\r\n$P\r\nQUIT\r\n" | tr -d '\r' | grep -v '^250-' | tr '\n' '|')" \
	"220 mx.example.com ESMTP|250 ENHANCEDSTATUSCODES|334 VXNlcm5hbWU6|334 UGFzc3dvcmQ6|235 2.7.0 Authentication successful|221 2.0.0 mx.example.com closing connection|" \
	"AUTH LOGIN: Username:/Password: prompts, 235"
is "$(talk "EHLO c\r\nAUTH LOGIN $L\r\n$P\r\nQUIT\r\n" | codes)" "220,250,334,235 2.7.0,221 2.0.0" "AUTH LOGIN with the user name as initial response"
is "$(talk "EHLO c\r\nAUTH PLAIN\r\n$(b64 'alice@example.com\0alice@example.com\0correct horse')\r\nQUIT\r\n" | codes)" \
	"220,250,334,235 2.7.0,221 2.0.0" "AUTH PLAIN without initial response (334), authzid = user"
is "$(talk "EHLO c\r\nAUTH PLAIN $(b64 'bob\0alice@example.com\0correct horse')\r\nQUIT\r\n" | codes)" \
	"220,250,535 5.7.8,221 2.0.0" "AUTH PLAIN as someone else (authzid): 535 5.7.8"
is "$(talk "EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\nQUIT\r\n" | codes)" "220,250,334,501 5.7.0,334,501 5.7.0,221 2.0.0" "\"*\" cancels: 501 5.7.0"
is "$(talk "EHLO c\r\nAUTH PLAIN !!!!\r\nAUTH CRAM-MD5\r\nAUTH\r\nQUIT\r\n" | codes)" "220,250,501 5.5.2,504 5.5.4,501 5.5.4,221 2.0.0" \
	"bad base64 501 5.5.2, unknown mechanism 504 5.5.4, no mechanism 501"
is "$(talk "AUTH PLAIN $P\r\nHELO c\r\nAUTH PLAIN $P\r\nQUIT\r\n" | codes)" "220,503 5.5.1,250,503 5.5.1,221 2.0.0" "AUTH before EHLO, or after HELO: 503"
is "$(talk "EHLO c\r\nMAIL FROM:<>\r\nAUTH PLAIN $(b64 '\0alice@example.com\0correct horse')\r\nQUIT\r\n" | codes)" "220,250,250 2.1.0,503 5.5.1,221 2.0.0" "AUTH inside a transaction: 503"
is "$(talk "EHLO c\r\nAUTH PLAIN $(b64 '\0carol\0battery staple')\r\nQUIT\r\n" | codes)" "220,250,235 2.7.0,221 2.0.0" "a SHA-512-crypt user authenticates"
# failures: limit, log for fail2ban, delay
W=$(b64 '\0alice@example.com\0wrong')
out=$(talk "EHLO c\r\nAUTH PLAIN $W\r\nAUTH PLAIN $(b64 '\0nosuchuser\0x')\r\nAUTH PLAIN $W\r\nNOOP\r\n" | codes)
is "$out" "220,250,535 5.7.8,535 5.7.8,535 5.7.8,421 4.7.0" "wrong password / unknown user: 535 5.7.8; the 3rd failure: 421"
like "$(cat "$T/log")" 'auth failed ip=127\.0\.0\.1 method=PLAIN user=alice@example\.com failures=1' "failed AUTH logged with the IP"
like "$(cat "$T/log")" 'disconnect ip=127\.0\.0\.1 too-many-auth-failures' "disconnect after auth_max_failures"
echo "auth_failure_delay 1" >>"$T/conf/settings"
t0=$(date +%s%N)
talk "EHLO c\r\nAUTH PLAIN $W\r\nQUIT\r\n" >/dev/null
t1=$(date +%s%N)
ok "a failure is answered after auth_failure_delay (1 s)" test $(( (t1 - t0) / 1000000 )) -ge 1000
# unknown users cost the same hashing as known ones (no user enumeration by time)
echo "auth_failure_delay 0" >>"$T/conf/settings"
tm() { s=$(date +%s%N); talk "EHLO c\r\nAUTH PLAIN $1\r\nQUIT\r\n" >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
ta=$(tm "$W") tb=$(tm "$(b64 '\0nosuchuser\0wrong')")
ok "unknown user and wrong password take about as long (${ta} ms, ${tb} ms)" \
	test $((tb * 3)) -ge "$ta" -a $((ta * 3)) -ge "$tb"
# qmail's checkpassword interface instead of the table
cat >"$T/checkpw" <<'EOF'
#!/usr/bin/env python3
import os, sys
u, p, t = os.read(3, 1024).split(b"\0")[:3]
if u == b"cp" and p == b"secret" and t.isdigit():
    os.execvp(sys.argv[1], sys.argv[1:])
sys.exit(111 if u == b"tempfail" else 1)
EOF
chmod 755 "$T/checkpw"
cp "$T/conf/settings" "$T/s.cp"
echo "auth_checkpassword $T/checkpw" >>"$T/conf/settings"
is "$(talk "EHLO c\r\nAUTH PLAIN $(b64 '\0cp\0secret')\r\nMAIL FROM:<>\r\nRCPT TO:<x@elsewhere.test>\r\nQUIT\r\n" | codes)" \
	"220,250,235 2.7.0,250 2.1.0,250 2.1.5,221 2.0.0" "auth_checkpassword: good password 235, relay allowed"
is "$(talk "EHLO c\r\nAUTH PLAIN $(b64 '\0cp\0wrong')\r\nAUTH PLAIN $(b64 '\0alice@example.com\0correct horse')\r\nAUTH PLAIN $(b64 '\0tempfail\0x')\r\nQUIT\r\n" | codes)" \
	"220,250,535 5.7.8,535 5.7.8,454 4.7.0,221 2.0.0" "auth_checkpassword: exit 1 is 535 (the table is not used), exit 111 is 454"
cp "$T/s.cp" "$T/conf/settings"
grep -v '^auth_loopback_plaintext' "$T/conf/settings" >"$T/s.tmp" && cat "$T/s.tmp" >"$T/conf/settings"

# ---- own listener: STARTTLS, then AUTH; relaying ----
port=$(free_port) sport=$(free_port)
smtpd-lite -c "$T/conf" -l 127.0.0.1:$port -L 127.0.0.1:$sport $CH 2>>"$T/log" & lpid=$!
bg_pid $lpid
wait_port 127.0.0.1 $port && wait_port 127.0.0.1 $sport || echo "not ok - listener did not start"
out=$($C session plain 127.0.0.1 $port --user alice@example.com --password 'correct horse' --mech PLAIN --to x@elsewhere.test)
like "$out" '^auth 538 ' "listener, no TLS: AUTH refused with 538 (TLS required)"
like "$out" '^rcpt 554 5\.7\.1 ' "... and relaying refused"
out=$($C session starttls 127.0.0.1 $port --user alice@example.com --password 'correct horse' --from alice@example.com --to x@elsewhere.test)
like "$out" '^ehlo .*AUTH' "under TLS, AUTH is advertised"
like "$out" '^auth 235 2\.7\.0' "smtplib starttls()+login(): 235"
like "$out" '^rcpt 250 2\.1\.5' "authenticated user from 127.0.0.1 (allow, not relay) may relay"
like "$out" '^data 250 2\.0\.0' "relayed message accepted"
like "$(msgof)" 'with ESMTPSA id' "Received: with ESMTPSA"
like "$(msgof)" '^	\(authenticated sender: alice@example\.com\)$' "Received: the authenticated user"
like "$(envof)" '^AUTH_USER=alice@example\.com$' "chain environment: AUTH_USER"
like "$(envof)" '^AUTHUSER=alice@example\.com$' "chain environment: AUTHUSER (ruleproc's name)"
like "$(envof)" '^AUTH_METHOD=(PLAIN|LOGIN)$' "chain environment: AUTH_METHOD"
like "$(cat "$T/pol/log")" '^sasl_username=alice@example\.com$' "policy services get sasl_username"
like "$(cat "$T/pol/log")" '^sasl_method=(PLAIN|LOGIN)$' "policy services get sasl_method"
printf 'EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n' |
	AUTH_USER=mallory AUTHUSER=mallory TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CH >/dev/null 2>>"$T/log"
nok "AUTH_USER from the environment is not passed on" grep -q '^AUTH_USER=\|^AUTHUSER=' "$T/out/$(basename "$(lastmsg)" .msg).env"
out=$($C session starttls 127.0.0.1 $port --to x@elsewhere.test)
like "$out" '^rcpt 554 5\.7\.1 ' "under TLS without AUTH: relaying refused"
out=$($C session starttls 127.0.0.1 $port --user alice@example.com --password wrong --to x@elsewhere.test)
like "$out" '^auth 535 ' "wrong password: 535"
like "$out" '^rcpt 554 5\.7\.1 ' "wrong password: relaying refused"
out=$($C session starttls 127.0.0.1 $port --user alice@example.com --password 'correct horse' --mech LOGIN --to x@elsewhere.test)
like "$out" '^auth 235 ' "AUTH LOGIN under TLS"
like "$out" '^rcpt 250 ' "AUTH LOGIN user may relay"
out=$($C session implicit 127.0.0.1 $sport --user carol --password 'battery staple' --to x@elsewhere.test)
like "$out" '^rcpt 250 ' "implicit TLS (-L): AUTH and relay"
if command -v swaks >/dev/null; then
	ok "swaks --tls --auth PLAIN: relay" swaks -S --tls --auth PLAIN --auth-user alice@example.com --auth-password 'correct horse' \
	    --server 127.0.0.1:$port --from alice@example.com --to x@elsewhere.test
	ok "swaks --tls --auth LOGIN: relay" swaks -S --tls --auth LOGIN --auth-user alice@example.com --auth-password 'correct horse' \
	    --server 127.0.0.1:$port --from alice@example.com --to x@elsewhere.test
	nok "swaks --tls --auth with a wrong password fails" swaks -S --tls --auth PLAIN --auth-user alice@example.com --auth-password nope \
	    --server 127.0.0.1:$port --from alice@example.com --to x@elsewhere.test
else
	skip "swaks not installed"
fi
stop $lpid

# ---- submission (-m): AUTH before MAIL; the senders table ----
printf 'alice@example.com alice@example.com\n@example.org carol\n' >"$T/conf/senders"
mkcdb -c "$T/conf" senders >/dev/null
echo "auth_sender_check yes" >>"$T/conf/settings"
mport=$(free_port)
smtpd-lite -m -c "$T/conf" -l 127.0.0.1:$mport $CH 2>>"$T/log" & mpid=$!
bg_pid $mpid
wait_port 127.0.0.1 $mport
out=$($C session starttls 127.0.0.1 $mport --to alice@example.com)
like "$out" '^mail 530 5\.7\.0 ' "-m: MAIL without AUTH: 530 5.7.0, even to a local user"
out=$($C session starttls 127.0.0.1 $mport --user alice@example.com --password 'correct horse' --from alice@example.com --to x@elsewhere.test)
like "$out" '^data 250 ' "-m: after AUTH, own sender: accepted"
out=$($C session starttls 127.0.0.1 $mport --user alice@example.com --password 'correct horse' --from bob@example.com --to x@elsewhere.test)
like "$out" '^mail 553 5\.7\.1 .*not owned by user alice@example\.com' "senders: someone else's address: 553 5.7.1"
out=$($C session starttls 127.0.0.1 $mport --user carol --password 'battery staple' --from anyone@example.org --to x@elsewhere.test)
like "$out" '^mail 250 ' "senders: @domain entry"
out=$($C session starttls 127.0.0.1 $mport --user carol --password 'battery staple' --from '' --to x@elsewhere.test)
like "$out" '^mail 250 ' "senders: the null sender is allowed"
stop $mpid

# ---- under tcpserver ----
if command -v tcpserver >/dev/null; then
	tport=$(free_port)
	tcpserver -R -H -l localhost 127.0.0.1 $tport smtpd-lite -c "$T/conf" $CH 2>>"$T/log" & tp=$!
	bg_pid $tp
	wait_port 127.0.0.1 $tport
	out=$($C session starttls 127.0.0.1 $tport --user alice@example.com --password 'correct horse' --from alice@example.com --to x@elsewhere.test)
	like "$out" '^data 250 ' "tcpserver: STARTTLS, AUTH, relay"
	like "$($C session starttls 127.0.0.1 $tport --to x@elsewhere.test)" '^rcpt 554 ' "tcpserver: no AUTH, no relay"
	if command -v swaks >/dev/null; then
		ok "tcpserver: swaks --tls --auth" swaks -S --tls --auth PLAIN --auth-user carol --auth-password 'battery staple' \
		    --server 127.0.0.1:$tport --from anyone@example.org --to x@elsewhere.test
	fi
	stop $tp
else
	skip "tcpserver (ucspi-tcp) not installed"
fi
