#!/bin/sh
# smtpd-lite: commands, replies and enhanced status codes, pipelining,
# line limits, error and recipient limits, timeouts (sessions on a pipe).
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
smtpd_setup "max_recipients 3" "max_errors 5"
E='EHLO client.test\r\n'
M='MAIL FROM:<bob@remote.test>\r\n'
R='RCPT TO:<alice@example.com>\r\n'
Q='QUIT\r\n'

like "$(smtpd-lite -h)" '^usage: smtpd-lite ' "-h prints the usage"
smtpd-lite -Z >/dev/null 2>&1; is "$?" 100 "unknown option: exit 100"
printf 'QUIT\r\n' | smtpd-lite -c "$T/nonexistent" >/dev/null 2>&1; is "$?" 111 "missing confdir: exit 111"

out=$(talk "$E$Q")
like "$out" '^220 mx\.example\.com ESMTP' "greeting 220 with host name"
for ext in PIPELINING 'SIZE 10485760' 8BITMIME ENHANCEDSTATUSCODES; do
	like "$out" "^250[- ]$ext" "EHLO advertises $ext"
done
is "$(talk "HELO client.test\r\n$Q" | codes)" "220,250,221 2.0.0" "HELO: one-line 250; QUIT 221 2.0.0"
is "$(talk "EHLO\r\nHELO\r\n$Q" | codes)" "220,501 5.5.4,501 5.5.4,221 2.0.0" "EHLO/HELO without a name: 501 5.5.4"
is "$(talk "$M$Q" | codes)" "220,503 5.5.1,221 2.0.0" "MAIL before EHLO: 503 5.5.1"
is "$(talk "$E$R$Q" | codes)" "220,250,503 5.5.1,221 2.0.0" "RCPT before MAIL: 503 5.5.1"
is "$(talk "${E}DATA\r\n$Q" | codes)" "220,250,503 5.5.1,221 2.0.0" "DATA before MAIL: 503 5.5.1"
is "$(talk "$E${M}DATA\r\n$Q" | codes)" "220,250,250 2.1.0,503 5.5.1,221 2.0.0" "DATA before RCPT: 503 5.5.1"
is "$(talk "$E${M}RCPT TO:<nobody@example.com>\r\nDATA\r\n$Q" | codes)" \
   "220,250,250 2.1.0,550 5.1.1,554 5.5.1,221 2.0.0" "DATA with all recipients rejected: 554 5.5.1"
is "$(talk "$E$M$M$Q" | codes)" "220,250,250 2.1.0,503 5.5.1,221 2.0.0" "nested MAIL: 503 5.5.1"
is "$(talk "${E}MAIL <bob@remote.test>\r\nMAIL FROM:\r\n$Q" | codes)" "220,250,501 5.5.4,501 5.5.4,221 2.0.0" "MAIL syntax: 501 5.5.4"
is "$(talk "${E}MAIL FROM:<bob@>\r\nMAIL FROM:<bob@remote.test\r\n$Q" | codes)" "220,250,501 5.1.7,501 5.1.7,221 2.0.0" "bad sender address: 501 5.1.7"
is "$(talk "$E${M}RCPT <alice@example.com>\r\nRCPT TO:<alice@@example.com>\r\nRCPT TO:<>\r\n$Q" | codes)" \
   "220,250,250 2.1.0,501 5.5.4,501 5.1.3,501 5.1.3,221 2.0.0" "RCPT syntax 501 5.5.4, bad address 501 5.1.3"
is "$(talk "${E}MAIL FROM:<>\r\n$R$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,221 2.0.0" "null sender <> accepted"
is "$(talk "${E}mail from: <bob@remote.test>\r\nrcpt to: <alice@example.com>\r\n$Q" | codes)" \
   "220,250,250 2.1.0,250 2.1.5,221 2.0.0" "lower case verbs and a blank after the colon"
is "$(talk "${E}MAIL FROM:<bob@remote.test> SIZE=1000 BODY=8BITMIME\r\n$Q" | codes)" "220,250,250 2.1.0,221 2.0.0" "MAIL with SIZE= and BODY=8BITMIME"
is "$(talk "${E}MAIL FROM:<bob@remote.test> SIZE=10485761\r\nMAIL FROM:<bob@remote.test> SIZE=99999999999999999999999\r\n$Q" | codes)" \
   "220,250,552 5.3.4,552 5.3.4,221 2.0.0" "SIZE= over the limit: 552 5.3.4 at MAIL"
is "$(talk "${E}MAIL FROM:<bob@remote.test> SIZE=abc\r\nMAIL FROM:<bob@remote.test> BODY=9BIT\r\n$Q" | codes)" \
   "220,250,501 5.5.4,501 5.5.4,221 2.0.0" "bad SIZE/BODY values: 501 5.5.4"
is "$(talk "${E}MAIL FROM:<bob@remote.test> FOO=bar\r\n$M${R}RCPT TO:<bob@example.com> NOTIFY=NEVER\r\n$Q" | codes)" \
   "220,250,555 5.5.4,250 2.1.0,250 2.1.5,555 5.5.4,221 2.0.0" "unknown MAIL/RCPT parameters: 555 5.5.4"
is "$(talk "HELO c\r\nMAIL FROM:<bob@remote.test> SIZE=10\r\n$Q" | codes)" "220,250,555 5.5.4,221 2.0.0" "parameters after HELO: 555 5.5.4"
is "$(talk "$E${M}RSET\r\n${M}RSET x\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.0.0,250 2.1.0,501 5.5.4,221 2.0.0" "RSET ends the transaction: 250 2.0.0"
is "$(talk "NOOP\r\nNOOP hello\r\n$Q" | codes)" "220,250 2.0.0,250 2.0.0,221 2.0.0" "NOOP 250 2.0.0"
is "$(talk "HELP\r\n$Q" | codes)" "220,214 2.0.0,221 2.0.0" "HELP 214 2.0.0"
out=$(talk "VRFY alice\r\nVRFY\r\n$Q")
is "$(echo "$out" | codes)" "220,252 2.5.2,501 5.5.4,221 2.0.0" "VRFY 252 2.5.2, without argument 501"
nok "VRFY reveals nothing" sh -c "echo '$out' | grep -qi alice"
is "$(talk "EXPN list\r\n$Q" | codes)" "220,502 5.5.1,221 2.0.0" "EXPN 502 5.5.1"
is "$(talk "FOO\r\nSTARTTLS\r\n\r\n$Q" | codes)" "220,500 5.5.2,502 5.5.1,500 5.5.2,221 2.0.0" "unknown 500 5.5.2, not implemented 502 5.5.1, empty line 500"
is "$(talk "QUIT now\r\n$Q" | codes)" "220,501 5.5.4,221 2.0.0" "QUIT with an argument: 501 5.5.4"
is "$(talk "${E}DATA x\r\n$Q" | codes)" "220,250,501 5.5.4,221 2.0.0" "DATA with an argument: 501 5.5.4"
is "$(talk "EHLO a b\r\nEHLO bad\001name\r\n$Q" | codes)" "220,250,501 5.5.4,221 2.0.0" "HELO name with control characters: 501 5.5.4"

# Recipient limit (3 here): the 4th gets 452 4.5.3, the message still goes.
out=$(talk "$E$M$R$R$R${R}DATA\r\nx\r\n.\r\n$Q" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,250 2.1.5,250 2.1.5,452 4.5.3,354,250 2.0.0,221 2.0.0" "recipient limit: 452 4.5.3"

# Error limit (5 here): the 6th bad command gets 421 and the end.
out=$(talk "FOO\r\nFOO\r\nFOO\r\nFOO\r\nFOO\r\nFOO\r\nNOOP\r\n" | codes)
is "$out" "220,500 5.5.2,500 5.5.2,500 5.5.2,500 5.5.2,500 5.5.2,421 4.7.0" "error limit: 421 4.7.0 and close"

# Command line limit: 512 octets with CRLF. 510 + CRLF is fine.
xs() { printf "%$1s" '' | tr ' ' x; }
l510="NOOP $(xs 505)"
l511="NOOP $(xs 506)"
lbig="NOOP $(xs 5000)"
is "$(talk "$l510\r\n$Q" | codes)" "220,250 2.0.0,221 2.0.0" "512-octet command line accepted"
is "$(talk "$l511\r\n$Q" | codes)" "220,500 5.5.2,221 2.0.0" "513-octet command line: 500 5.5.2"
is "$(talk "$lbig\r\nNOOP\r\n$Q" | codes)" "220,500 5.5.2,250 2.0.0,221 2.0.0" "5000-octet line: one 500 5.5.2, framing kept"
is "$(talk "NOOP\000x\r\n$Q" | codes)" "220,500 5.5.2,221 2.0.0" "NUL in a command: 500 5.5.2"
is "$(talk "NOOP\nQUIT\n" | codes)" "220,250 2.0.0,221 2.0.0" "commands ended by a bare LF are understood"

# Pipelining: a whole transaction in one write; replies complete, in order.
out=$(talk "$E$M${R}RCPT TO:<nobody@example.com>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\nSubject: p\r\n\r\nx\r\n.\r\n$M${R}DATA\r\ny\r\n.\r\n$Q" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,550 5.1.1,250 2.1.5,354,250 2.0.0,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "pipelined transactions: replies in order"
is "$(nmsg)" 3 "pipelined messages handed to the chain"

# Replies to a pipelined group come in one write (flush only when idle).
cat >"$T/pipe.py" <<'PY'
import socket, subprocess, sys, os
a, b = socket.socketpair()
env = dict(os.environ, TCPREMOTEIP="127.0.0.1")
p = subprocess.Popen(sys.argv[1:], stdin=b, stdout=b, stderr=open(os.environ["T"] + "/log", "a"), env=env)
b.close()
def rd():
    data = b""
    while not data.endswith(b"\r\n"):
        data += a.recv(65536)
    return data
rd()  # greeting
a.sendall(b"EHLO x\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nNOOP\r\n")
# one blocking recv: everything must come in the first write
chunk = a.recv(65536)
print(chunk.count(b"\r\n"))
a.sendall(b"QUIT\r\n"); rd(); p.wait()
PY
export T
is "$(python3 "$T/pipe.py" smtpd-lite -c "$T/conf" $CHAIN "$T/out")" 9 "pipelined group answered in one write (EHLO 5 lines + 4)"

# Timeouts (1 s here): 421 4.4.2.
echo "timeout_command 1" >>"$T/conf/settings"
out=$( (printf "$E"; sleep 3) | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" 2>>"$T/log" | codes)
is "$out" "220,250,421 4.4.2" "command timeout: 421 4.4.2"
like "$(cat "$T/log")" 'disconnect ip=127\.0\.0\.1 timeout' "timeout logged"
like "$(cat "$T/log")" '^smtpd-lite\[[0-9A-F]+\]: connect ip=127\.0\.0\.1' "log lines carry the session id"
