# mxqueue: delivery by SMTP to a sink on loopback: per-recipient replies
# (250/450/550), the text on the wire (CRLF, dot-stuffing, Delivered-To
# for forwards), EHLO/HELO, PIPELINING, SIZE, 8BITMIME, routes and the
# smarthost, retries with second-scale intervals, the sink down at
# first, give-up after the lifetime with an RFC 3464 DSN, null senders
# never bounced (double bounce to postmaster), delay warnings, the
# maildir and local kinds.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
qconf
P=$(free_port)
echo "elsewhere.test [127.0.0.1]:$P" >"$C/routes"
mkcdb -c "$C" >/dev/null
sink s1 127.0.0.1 "$P" --size 100000

# 1. mixed replies in one transaction
qadd bob@example.com ok1@elsewhere.test t4a@elsewhere.test p5b@elsewhere.test
is "$(qn)" 1 "deliver queued one entry for three relay recipients"
qrun
is "$(nmsg s1)" 1 "the sink took one message"
f=$T/s1/msg.1
is "$(grep -c '^X-Sink-To:' "$f")" 1 "only the 250 recipient got it"
like "$(grep '^X-Sink-To:' "$f")" 'ok1@elsewhere.test' "... and it is ok1"
like "$(grep '^X-Sink-Params:' "$f")" 'SIZE=[0-9]+' "SIZE= sent when offered"
ok "every line ends with CRLF on the wire" sh -c "! tail -n +4 '$f' | grep -qv \$(printf '\\r')\$"
tr -d '\r' <"$f" | tail -n +4 >"$T/got"
ok "the text arrives exactly (dot-stuffing undone by the sink)" cmp "$T/got" "$T/m"
grep -E '^(EHLO|MAIL|RCPT|DATA)' "$T/s1/log" | tr -d '\r' >"$T/cmds"
is "$(head -n 1 "$T/cmds")" "EHLO mx.example.com" "EHLO with our hostname"
id=$(ls "$Q/info")
st=$(grep '^rcpt' "$Q/info/$id" | cut -f 2,7 | tr '\t' ' ')
is "$st" "delivered ok1@elsewhere.test
pending t4a@elsewhere.test
bounced p5b@elsewhere.test" "states: 250 delivered, 450 pending, 550 bounced"
like "$(grep t4a "$Q/info/$id" | cut -f 12)" '^4\.2\.0 127\.0\.0\.1\[127\.0\.0\.1\] said: 450 4\.2\.0' "the 450 reply is kept with the host"
b=$(ls "$M/bob/new/"* 2>/dev/null | head -n 1)
ok "the bounce landed in the local sender's Maildir" test -n "$b"
if [ -n "$b" ]; then
	like "$(grep '^Content-Type: multipart/report' "$b")" 'report-type=delivery-status' "DSN: multipart/report; report-type=delivery-status"
	is "$(grep '^Return-Path:' "$b")" "Return-Path: <>" "DSN: null sender"
	is "$(grep -c '^Final-Recipient: rfc822; p5b@elsewhere.test' "$b")" 1 "DSN: Final-Recipient of the 550 one"
	is "$(grep '^Action:' "$b")" "Action: failed" "DSN: Action: failed"
	is "$(grep '^Status:' "$b")" "Status: 5.1.1" "DSN: Status 5.1.1"
	like "$(grep '^Diagnostic-Code:' "$b")" '^Diagnostic-Code: smtp; 550 5\.1\.1 ' "DSN: Diagnostic-Code: smtp; 550 ..."
	like "$(grep '^Remote-MTA:' "$b")" '^Remote-MTA: dns; 127\.0\.0\.1$' "DSN: Remote-MTA"
	like "$(grep '^Reporting-MTA:' "$b")" 'dns; mx\.example\.com' "DSN: Reporting-MTA"
	ok "DSN: the original header section is returned" grep -q '^Subject: queue test$' "$b"
	ok "DSN: text/rfc822-headers part" grep -q '^Content-Type: text/rfc822-headers' "$b"
	nok "DSN: not the body" grep -q '^last line$' "$b"
	nok "DSN: ok1 and t4a are not in the bounce" grep -Eq '^Final-Recipient: .*(ok1|t4a)' "$b"
fi

# 2. retries with second-scale intervals: t4a stays pending, attempts grow
sleep 1.2; qrun; sleep 2.2; qrun
like "$(grep t4a "$Q/info/$id" | cut -f 3)" '^[3-9]$' "450 retried: three attempts after a few seconds"
n=$(grep t4a "$Q/info/$id" | cut -f 4); l=$(grep t4a "$Q/info/$id" | cut -f 5)
is "$((n - l))" 2 "back-off capped at retry_max (2 s)"
is "$(ls "$M/bob/new" | wc -l | tr -d ' ')" 1 "the 550 is bounced once, not on every run"

# 3. give up after the lifetime: a DSN with the last 4xx in it
qset "queue_lifetime 3s"
sleep 1.5; qrun; sleep 2; qrun
is "$(qn)" 0 "expired: the entry is gone"
b2=$(ls -t "$M/bob/new/"* | head -n 1)
like "$(grep '^Status:' "$b2")" '^Status: 5\.4\.7' "expired DSN: Status 5.4.7"
like "$(grep '^Diagnostic-Code:' "$b2")" 'smtp; 450 4\.2\.0' "expired DSN: the last reply as Diagnostic-Code"
ok "expired DSN: Final-Recipient t4a" grep -q '^Final-Recipient: rfc822; t4a@elsewhere.test' "$b2"
qset "queue_lifetime 5d"

# 4. null sender: never bounced; the failure goes to postmaster
rm -f "$M"/alice/new/*
qset "doublebounce_to postmaster@example.com"
qadd "" p5c@elsewhere.test
qrun
is "$(qn)" 0 "failed bounce: nothing left in the queue"
dbf=$(ls "$M/alice/new/"* 2>/dev/null | head -n 1)
ok "double bounce in postmaster's (alice's) Maildir" test -n "$dbf"
ok "double bounce names the failed recipient" grep -q 'p5c@elsewhere.test' "$dbf"
is "$(grep '^Return-Path:' "$dbf")" "Return-Path: <>" "double bounce: from <>"
nok "nothing sent to the empty sender" grep -rq 'To: <>' "$T/s1"
# a double bounce that fails is dropped, not bounced again
qset "doublebounce_to p5pm@elsewhere.test"
qadd "" p5d@elsewhere.test
qrun
is "$(qn)" 0 "a failed double bounce is dropped (no loop)"
like "$(grep -c 'double bounce failed too' "$T/run.log")" '^[1-9]' "the drop is logged"
qset "doublebounce_to postmaster@example.com"

# 5. forward: Delivered-To of the alias in front, on its own
rm -rf "$T/s1"/msg.*
echo "elsewhere.test [127.0.0.1]:$P" >"$C/routes"
mkcdb -c "$C" >/dev/null
qadd carol@example.com dave@example.com
qrun
f=$(ls "$T/s1"/msg.* | head -n 1)
is "$(sed -n 4p "$f" | tr -d '\r')" "Delivered-To: dave@example.com" "forward: Delivered-To: in front"
like "$(grep '^X-Sink-To' "$f")" 'dave@elsewhere.test' "forward: to the alias target"

# 6. 8BITMIME when the text has 8-bit bytes
rm -rf "$T/s1"/msg.*
printf 'Subject: caf\303\251\n\nna\303\257ve\n' >"$T/m"
qadd bob@example.com u8@elsewhere.test
qrun
like "$(grep '^X-Sink-Params:' "$T"/s1/msg.*)" 'BODY=8BITMIME' "BODY=8BITMIME for 8-bit text"
sink_stop s1

# 7. HELO fallback, no PIPELINING: one command at a time
P2=$(free_port)
sink s2 127.0.0.1 "$P2" --no-ehlo --no-pipelining
echo "helo.test [127.0.0.1]:$P2" >>"$C/routes"
mkcdb -c "$C" >/dev/null
qadd bob@example.com a@helo.test t4b@helo.test c@helo.test
qrun
tr -d '\r' <"$T/s2/log" | grep -E '^(EHLO|HELO)' >"$T/h"
is "$(cat "$T/h")" "EHLO mx.example.com
HELO mx.example.com" "EHLO refused: HELO"
is "$(grep -c '^X-Sink-To' "$T"/s2/msg.1)" 2 "without PIPELINING: per-recipient replies still right"
nok "no SIZE= when not offered" grep -q 'SIZE=' "$T/s2/msg.1"
mxqueue -c "$C" remove $(ls "$Q/info") >/dev/null 2>&1
sink_stop s2

# 8. SIZE: a message over the server's limit fails at once (5.3.4)
P3=$(free_port)
sink s3 127.0.0.1 "$P3" --size 20
echo "small.test [127.0.0.1]:$P3" >>"$C/routes"
mkcdb -c "$C" >/dev/null
rm -f "$M"/bob/new/*
qadd bob@example.com big@small.test
qrun
is "$(nmsg s3)" 0 "over SIZE: not sent"
like "$(grep -h '^Status:' "$M"/bob/new/* 2>/dev/null)" '5\.3\.4' "over SIZE: bounced 5.3.4"
sink_stop s3

# 9. the sink down at first, started later: retried and delivered
P4=$(free_port)
echo "later.test [127.0.0.1]:$P4" >>"$C/routes"
mkcdb -c "$C" >/dev/null
printf 'Subject: later\n\nhello later\n' >"$T/m"
qadd bob@example.com x@later.test
qrun
is "$(qn)" 1 "no server: stays queued"
like "$(mxqueue -c "$C" list | grep -A1 'x@later.test' | tail -n 1)" '4\.4\.1 cannot connect' "list shows the connect error"
sink s4 127.0.0.1 "$P4"
sleep 2.1; qrun	# retry_max is 2 s: due by now
is "$(nmsg s4)" 1 "server up: delivered on the retry"
is "$(qn)" 0 "and removed from the queue"
sink_stop s4

# 10. smarthost: "*" takes every other domain; [host] without MX
P5=$(free_port)
sink s5 127.0.0.1 "$P5"
echo "* [127.0.0.1]:$P5" >"$C/routes"
mkcdb -c "$C" >/dev/null
qadd bob@example.com any@faraway.invalid
qrun
is "$(nmsg s5)" 1 "smarthost '*' route used for an unlisted domain"

# 11. a temporary failure with data accepted by nobody: 4xx after the dot
sink_stop s5
sink s5 127.0.0.1 "$P5" --dot 451
qadd bob@example.com late@faraway.invalid
qrun
like "$(grep late "$Q"/info/* | cut -f 2)" pending "451 after the dot: pending"
sink_stop s5
sink s5 127.0.0.1 "$P5"
sleep 2.1; qrun	# retry_max is 2 s: due by now
is "$(nmsg s5)" 2 "... and delivered on the retry"

# 12. delay warning: once, to the sender, Action: delayed
qset "delay_warning 1s"
echo "* [127.0.0.1]:$(free_port)" >"$C/routes"
mkcdb -c "$C" >/dev/null
rm -f "$M"/bob/new/*
qadd bob@example.com slow@faraway.invalid
qrun; sleep 1.2; qrun; sleep 1.2; qrun
w=$(grep -l '^Action: delayed' "$M"/bob/new/* 2>/dev/null | wc -l | tr -d ' ')
is "$w" 1 "one delay warning"
ok "delay warning: Will-Retry-Until" grep -q '^Will-Retry-Until:' "$M"/bob/new/*
is "$(qn)" 1 "still queued after the warning"
mxqueue -c "$C" remove $(ls "$Q/info") >/dev/null 2>&1
qset "delay_warning 0"

# 13. maildir kind: an unwritable Maildir retried locally
rm -rf "$M/carol"; mkdir -p "$M/carol/tmp" "$M/carol/new" "$M/carol/cur"
chown -R nobody "$M/carol" 2>/dev/null; chmod 500 "$M/carol/new"
printf 'Subject: local\n\nlocal kinds\n' >"$T/m"
qadd x@example.net alice@example.com carol@example.com
like "$(grep '^rcpt' "$Q"/info/* | cut -f 6)" maildir "unwritable Maildir: queued as kind maildir"
chmod 700 "$M/carol/new"
qrun
is "$(ls "$M/carol/new" | wc -l | tr -d ' ')" 1 "maildir kind delivered on the retry"
is "$(qn)" 0 "maildir retry: entry removed"
f=$(ls "$M"/carol/new/* | head -n 1)
is "$(head -n 1 "$f")" "Return-Path: <x@example.net>" "maildir retry: Return-Path in front (no Delivered-To: the copy was shared)"
ok "maildir retry: the message follows" sh -c "tail -n +2 '$f' | cmp - '$T/m'"

# 14. local kind: deliver(8) runs again (an entry as deliver writes one
# when a table cannot be read)
id=1700000000.M000001P1Q1
mkdir -p "$Q/mess" "$Q/info"
cp "$T/m" "$Q/mess/$id"
printf 'mxqueue 1\nid %s\ncreated %s\nsender x@example.net\nmxid \nclient \nhelo \nsize %s\nrcpt\tpending\t0\t0\t0\tlocal\teve@example.net\teve@example.net\t\t\t\t4.3.0 cannot read the mailboxes table\nend\n' \
    "$id" "$(date +%s)" "$(stat -c %s "$T/m")" >"$Q/info/$id"
chmod 666 "$Q/mess/$id" "$Q/info/$id"
qrun
is "$(ls "$M"/eve/new 2>/dev/null | wc -l | tr -d ' ')" 1 "local kind: delivered by deliver on the retry"
is "$(qn)" 0 "local kind: entry removed"
# local kind, unknown user: deliver says 5.1.1, the sender gets a bounce
cp "$T/m" "$Q/mess/$id"
sed 's/eve@example.net/nosuch@example.net/g' >"$Q/info/$id" <<EOF2
$(printf 'mxqueue 1\nid %s\ncreated %s\nsender bob@example.com\nmxid \nclient \nhelo \nsize %s\nrcpt\tpending\t0\t0\t0\tlocal\teve@example.net\teve@example.net\t\t\t\t\nend' "$id" "$(date +%s)" "$(stat -c %s "$T/m")")
EOF2
chmod 666 "$Q/mess/$id" "$Q/info/$id"
rm -f "$M"/bob/new/*
qrun
like "$(grep -h '^Status:' "$M"/bob/new/* 2>/dev/null)" '5\.1\.1' "local kind, unknown user: bounced with deliver's 5.1.1"
is "$(qn)" 0 "... and the entry removed"
