#!/bin/sh
# smtpd-lite: DATA. Dot-unstuffing, CRLF -> LF, Received:, envelope
# hand-off, SMTP smuggling variants, NULs, size and hop limits,
# disconnects and timeouts in DATA, chain exit code mapping.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
smtpd_setup "max_size 2048" "max_hops 3" "timeout_chain 2"
E='EHLO client.test\r\n'
M='MAIL FROM:<bob@remote.test>\r\n'
R='RCPT TO:<alice@example.com>\r\n'
Q='QUIT\r\n'
TX="$E$M${R}DATA\r\n"

out=$(talk "${TX}Subject: t\r\n\r\nline 1\r\n..dot\r\n.x\r\n\r\nend\r\n.\r\n$Q")
is "$(echo "$out" | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "a message is accepted"
id=$(echo "$out" | tr -d '\r' | sed -n 's/^250 2\.0\.0 Ok \([0-9A-F]*\)$/\1/p')
like "$id" '^[0-9A-F]{20,}$' "250 2.0.0 Ok ID (hex, Maildir-safe)"
msg=$T/out/$id.msg
ok "the chain got the message under its MXID" test -f "$msg"
is "$(sed -n 1p "$msg")" "Received: from client.test ([127.0.0.1])" "Received: line 1: HELO and IP"
is "$(sed -n 2p "$msg")" "	by mx.example.com (smtpd-lite) with ESMTP id $id" "Received: line 2: host, ESMTP, id"
like "$(sed -n 3p "$msg")" '^	for <alice@example\.com>; [A-Z][a-z][a-z], [0-9]{2} [A-Z][a-z][a-z] [0-9]{4} [0-9:]{8} [-+][0-9]{4}$' \
	"Received: line 3: for <rcpt> and an RFC 5322 date"
printf 'Subject: t\n\nline 1\n.dot\nx\n\nend\n' >"$T/want"
tail -n +4 "$msg" >"$T/got"
ok "text unstuffed, CRLF -> LF, nothing else changed" cmp "$T/got" "$T/want"
ok "stdin of the chain is seekable (read twice, same bytes)" cmp "$msg" "$T/out/$id.msg2"
env=$(cat "$T/out/$id.env")
like "$env" '^SENDER=bob@remote\.test$' "SENDER in the environment"
like "$env" '^RECIPIENTS=alice@example\.com $' "RECIPIENTS in the environment"
like "$env" '^TCPREMOTEIP=127\.0\.0\.1$' "TCPREMOTEIP in the environment"
like "$env" '^HELO=client\.test$' "HELO in the environment"
like "$env" "^MXID=$id\$" "MXID in the environment"
if [ "$(id -u)" = 0 ]; then
	nok "started as root, the chain does not run as root" grep -q '^UID=0$' "$T/out/$id.env"
else
	skip "not root: privilege drop not tested here"
fi

# The reverse name (tcpserver's TCPREMOTEHOST) is shown when it is a plain name.
printf "${TX}x\r\n.\r\n$Q" | TCPREMOTEHOST=mail.remote.test TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" >/dev/null 2>>"$T/log"
is "$(sed -n 1p "$(lastmsg)")" "Received: from client.test (mail.remote.test [127.0.0.1])" "Received: with the reverse name"
like "$(cat "$T/out/$(basename "$(lastmsg)" .msg).env")" '^TCPREMOTEHOST=mail\.remote\.test$' "TCPREMOTEHOST passed to the chain"
printf "${TX}x\r\n.\r\n$Q" | TCPREMOTEHOST='evil) (x' TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" >/dev/null 2>>"$T/log"
is "$(sed -n 1p "$(lastmsg)")" "Received: from client.test ([127.0.0.1])" "a reverse name with odd bytes is not used"

rm -f "$T"/out/*
out=$(talk "${E}MAIL FROM:<>\r\n${R}RCPT TO:<bob@example.com>\r\nDATA\r\nx\r\n.\r\n$Q" | codes)
msg=$(lastmsg)
like "$(sed -n 3p "$msg")" '^	; ' "two recipients: no 'for' clause"
like "$(cat "$T"/out/*.env)" '^RECIPIENTS=alice@example\.com bob@example\.com $' "both recipients, one a line"
like "$(cat "$T"/out/*.env)" '^SENDER=$' "null sender: SENDER empty"
is "$(talk "HELO c\r\n$M${R}DATA\r\nx\r\n.\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "HELO session"
like "$(sed -n 2p "$(lastmsg)")" ' with SMTP id ' "Received: with SMTP after HELO"
rm -f "$T"/out/*
is "$(talk "${TX}.\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "empty message"
is "$(tail -n +4 "$(lastmsg)" | wc -c)" 0 "empty message: only our Received:"

# SMTP smuggling: none of these end the data; it is refused at the real end.
n=0
for v in '\n.\n' '\n.\r\n' '\r\n.\n' '\r.\r' '\r\r\n'; do
	n=$((n + 1))
	name=$(printf '%s' "$v" | sed 's/\\/\\\\/g')
	rm -f "$T"/out/*
	out=$(talk "${TX}Subject: s\r\n\r\nhello${v}MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n$Q" | codes)
	is "$out" "220,250,250 2.1.0,250 2.1.5,354,554 5.5.2,221 2.0.0" "smuggling $name: one reply, 554 5.5.2"
	is "$(nmsg)" 0 "smuggling $name: nothing delivered"
done
rm -f "$T"/out/*
out=$(talk "${TX}a bare LF\n.\r\n$Q" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354" "bare LF then .CRLF: not an end, QUIT is text"
is "$(nmsg)" 0 "bare LF then .CRLF then EOF: nothing delivered"

# NUL bytes: refused, never cut.
rm -f "$T"/out/*
is "$(talk "${TX}a\000b\r\n.\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,354,554 5.6.0,221 2.0.0" "NUL in the text: 554 5.6.0"
is "$(nmsg)" 0 "NUL: nothing delivered"

# Long text lines (over 1000 octets) are kept whole.
long=$(printf '%1900s' '' | tr ' ' y)
talk "${TX}$long\r\n.\r\n$Q" >/dev/null
is "$(tail -n 1 "$(lastmsg)" | wc -c)" 1901 "a 1900-octet line is kept unchanged"

# Size limit 2048: the rest is read and thrown away, 552 5.3.4, session goes on.
rm -f "$T"/out/*
big=$(printf '%100s' '' | tr ' ' z)
body=; i=0; while [ $i -lt 40 ]; do body="$body$big\r\n"; i=$((i + 1)); done
out=$(talk "$TX$body.\r\n$M${R}DATA\r\nsmall\r\n.\r\n$Q" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,552 5.3.4,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "over max_size: 552 5.3.4, next message fine"
is "$(nmsg)" 1 "oversized message not delivered"

# Hop limit 3: Received: and Delivered-To: headers are counted.
H='Received: from a\r\nReceived: from b\r\n'
is "$(talk "$TX${H}Delivered-To: x@example.com\r\n\r\nReceived: in the body\r\n.\r\n$Q" | codes)" \
   "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "3 hops accepted (body not counted)"
is "$(talk "$TX${H}received: from c\r\nDelivered-To: x@example.com\r\n\r\nx\r\n.\r\n$Q" | codes)" \
   "220,250,250 2.1.0,250 2.1.5,354,554 5.4.6,221 2.0.0" "4 hops: 554 5.4.6"

# The client goes away in the middle of DATA: nothing is handed on.
rm -f "$T"/out/*
talk "${TX}Subject: half\r\n\r\nhalf a mess" >/dev/null
is "$(nmsg)" 0 "disconnect in DATA: nothing handed to the chain"
like "$(cat "$T/log")" 'lost connection after [0-9]+ bytes, nothing delivered' "disconnect in DATA logged"
is "$(ls "$T/spool" | wc -l)" 0 "spool directory left empty"

# Chain exit codes -> replies; 250 only after exit 0.
reply_for() {
	echo "$1" >"$T/out/mode"
	talk "${TX}x\r\n.\r\n$Q" | tr -d '\r' | sed -n '/^354/{n;p;}'
}
is "$(reply_for perm)" "554 5.7.1 rejected by test chain" "chain exit 100: 554 with its last stderr line"
is "$(reply_for perm550)" "550 5.1.1 no such user here" "chain exit 100 with a full reply line"
is "$(reply_for garbage)" "554 5.6.0 Message rejected" "chain exit 100 without a reason: 554 5.6.0"
is "$(reply_for temp)" "451 4.2.2 mailbox full" "chain exit 111: 451 with its reason"
like "$(reply_for signal)" "^451 4\.3\.0 " "chain killed by a signal: 451 4.3.0"
like "$(reply_for exit7)" "^451 4\.3\.0 " "chain exit 7: 451 4.3.0"
start=$(date +%s)
like "$(reply_for sleep)" "^451 4\.3\.0 " "chain timeout (2 s): 451 4.3.0"
ok "chain timeout enforced" test $(( $(date +%s) - start )) -lt 10
like "$(cat "$T/log")" 'chain: timeout after 2s, killed' "chain timeout logged"
like "$(cat "$T/log")" 'chain: 5\.7\.1 rejected by test chain' "chain stderr lines logged"
echo ok >"$T/out/mode"
is "$(echo "chain /nonexistent/deliver -c x" >>"$T/conf/settings"; printf "${TX}x\r\n.\r\n$Q" |
	TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" 2>>"$T/log" | tr -d '\r' | sed -n '/^354/{n;p;}')" \
	"451 4.3.0 cannot run /nonexistent/deliver: No such file or directory" "settings chain that cannot run: 451 4.3.0"

# No chain given: the default BINDIR/deliver -c CONFDIR (into the Maildir).
if [ -x "$BIN/deliver" ]; then
	sed -i '/^chain /d' "$T/conf/settings"
	out=$(printf "${TX}Subject: default chain\r\n\r\nhi\r\n.\r\n$Q" | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" 2>>"$T/log" | codes)
	is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "default chain (deliver): 250 after delivery"
	like "$(cat "$T"/mail/alice/new/* 2>/dev/null)" '^Subject: default chain$' "default chain: the message is in alice's Maildir"
else
	skip "deliver not built: default chain not tested"
fi

# The spool directory cannot be written: 451 4.3.0 at DATA, no 354.
cp "$T/conf/settings" "$T/settings.keep"
echo "chain $CHAIN $T/out" >>"$T/conf/settings"
echo "spooldir $T/nospool" >>"$T/conf/settings"
echo "spool_memory 0" >>"$T/conf/settings"
out=$(printf "${TX}x\r\n.\r\n$Q" | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" 2>>"$T/log" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,451 4.3.0,500 5.5.2,500 5.5.2,221 2.0.0" "spool directory missing (spool_memory 0): 451 4.3.0 instead of 354"
like "$(cat "$T/log")" 'cannot create spool file in .*/nospool' "spool trouble logged"
# Memory spool (lib/spool.h): small messages never touch the spooldir;
# one that grows past spool_memory moves to it, and when it cannot: 451.
sed -i 's/^spool_memory 0$/spool_memory 600/' "$T/conf/settings"
rm -f "$T"/out/*
out=$(printf "${TX}small\r\n.\r\n$Q" | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" 2>>"$T/log" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "memory spool: a small message needs no spool directory"
big=$(head -c 800 /dev/zero | tr '\0' 'b')
out=$(printf "${TX}Subject: big\r\n\r\n%s\r\n%s\r\n.\r\n$Q" "$big" "$big" | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" 2>>"$T/log" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,451 4.3.0,221 2.0.0" "memory spool past spool_memory, spool directory missing: 451 4.3.0"
mkdir -p "$T/nospool" && chmod 777 "$T/nospool"
out=$(printf "${TX}Subject: big\r\n\r\n%s\r\n%s\r\n.\r\n$Q" "$big" "$big" | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" 2>>"$T/log" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "memory spool past spool_memory: moved to the spool directory, 250"
got=$(cat "$(ls -t "$T"/out/*.msg | head -1)" | grep -c "^$big\$")
is "$got" 2 "the moved spool: every byte there (both 800-byte lines)"
is "$(ls "$T/nospool" | wc -l)" 0 "the moved spool is unlinked (spool directory empty)"
cp "$T/settings.keep" "$T/conf/settings"

# DATA timeout (1 s): 421 4.4.2, nothing delivered.
rm -f "$T"/out/*
echo "timeout_data 1" >>"$T/conf/settings"
out=$( (printf "${TX}Subject: slow\r\n"; sleep 3) | TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" 2>>"$T/log" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,421 4.4.2" "DATA timeout: 421 4.4.2"
is "$(nmsg)" 0 "DATA timeout: nothing delivered"
# ruleproc's MXHEADERS (deliver(8)) in our own environment never reaches the chain
rm -f "$T"/out/*
sed -i '/^timeout_data 1$/d' "$T/conf/settings"
out=$(printf "${TX}Subject: env\r\n\r\nx\r\n.\r\nQUIT\r\n" | MXHEADERS="X-Forged: 1" MXHEADERS_AT=0 TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" 2>>"$T/log" | codes)
like "$out" '250 2\.0\.0' "a message with MXHEADERS in smtpd-lite's environment: accepted"
is "$(grep '^MXHEADERS=' "$T"/out/*.env)" "MXHEADERS=" "... and the chain does not get it"
