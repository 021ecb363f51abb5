#!/bin/sh
# smtpd-lite as a milter client (issue 9): ruleproc -m driven by
# smtpd-lite (header added, recipient redirected, rejects with the
# rule's text at the right stage); a scripted fake milter
# (t/fixtures/fake-milter.py) for each reply at each stage, the EOM
# modifications, protocol flags, timeouts and a dead milter; then
# Debian's OpenDKIM (sign, verify), clamav-milter and rspamd when installed.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
smtpd_setup
cp "$T/conf/settings" "$T/settings.base"
E='EHLO client.test\r\n'
Q='QUIT\r\n'
usesettings() {	# fresh settings plus these lines
	cp "$T/settings.base" "$T/conf/settings"
	for l in "$@"; do echo "$l" >>"$T/conf/settings"; done
}
msg() {	# msg FROM RCPT... : one message, replies on stdout
	from=$1; shift
	r=""
	for x in "$@"; do r="${r}RCPT TO:<$x>\r\n"; done
	talk "${E}MAIL FROM:<$from>\r\n${r}DATA\r\nFrom: <$from>\r\nSubject: test\r\n\r\n${BODY:-Hello.}\r\n.\r\n$Q"
}

# ---- ruleproc -m (our libmilter filter) ----
if [ -x "$BIN/ruleproc" ]; then
	mkdir -p "$T/rconf"
	cp "$T/conf/settings" "$T/rconf/"
	cat >"$T/rconf/rules" <<'RULES'
rule "Bad sender"
    sender *@bad.example
    reject 550 5.7.1 "Bad senders not welcome"
rule "Carol has left"
    recipient carol@example.com
    reject 550 5.1.1 "This domain no longer receives mail"
rule "No executables"
    body *EVILPAYLOAD*
    reject 554 5.7.1 "No evil payloads here"
rule "Mark"
    add-header X-Rules "checked"
    continue
rule "Dave has left"
    recipient dave@example.com
    redirect bob@example.com
RULES
	S=$T/ruleproc.sock
	ruleproc -m "unix:$S" -c "$T/rconf" 2>"$T/ruleproc.log" &
	bg_pid $!
	i=0; while [ ! -S "$S" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	chmod 666 "$S"	# smtpd-lite runs as the settings' user, ruleproc as root here
	usesettings "milter unix:$S"
	out=$(msg bob@remote.test alice@example.com | codes)
	is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "ruleproc: message accepted"
	m=$(lastmsg)
	like "$(cat "$m")" '^X-Rules: checked$' "ruleproc: added header in the delivered message"
	like "$(cat "$m")" '^Received: from client.test' "ruleproc: our Received: kept"
	like "$(cat "$m")" '^Hello\.$' "ruleproc: body intact"
	rm -f "$T"/out/*
	out=$(msg bob@remote.test dave@example.com | codes)
	is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "ruleproc redirect: accepted"
	like "$(cat "$T"/out/*.env)" '^RECIPIENTS=bob@example.com $' "ruleproc redirect: the chain gets the new recipient only"
	out=$(msg x@bad.example alice@example.com | tr -d '\r')
	like "$out" '^550 5\.7\.1 Bad senders not welcome$' "ruleproc: MAIL rejected with the rule's text"
	is "$(printf '%s\n' "$out" | codes)" "220,250,550 5.7.1,503 5.5.1,503 5.5.1,500 5.5.2,500 5.5.2,500 5.5.2,500 5.5.2,500 5.5.2,221 2.0.0" \
	    "ruleproc: reject at MAIL, nothing after it accepted"
	rm -f "$T"/out/*
	out=$(msg bob@remote.test carol@example.com alice@example.com | tr -d '\r')
	like "$out" '^550 5\.1\.1 This domain no longer receives mail$' "ruleproc: RCPT rejected with the rule's text"
	like "$(cat "$(lastmsg)" 2>/dev/null)" 'X-Rules' "ruleproc: the other recipient still gets it"
	like "$(cat "$T"/out/*.env)" '^RECIPIENTS=alice@example.com $' "ruleproc: per-recipient reject"
	rm -f "$T"/out/*
	out=$(BODY='here is EVILPAYLOAD ok' msg bob@remote.test alice@example.com | tr -d '\r')
	like "$out" '^554 5\.7\.1 No evil payloads here$' "ruleproc: end-of-data reject with the rule's text"
	is "$(nmsg)" 0 "ruleproc: rejected message not delivered"
	like "$(cat "$T/log")" 'milter unix:.* stage=mail action=reject reply=550 5\.7\.1 Bad senders' "one log line per milter decision"
	# the same over TCP: inet:HOST:PORT (libmilter's own syntax is PORT@HOST)
	PT=$(free_port)
	ruleproc -m "inet:$PT@127.0.0.1" -c "$T/rconf" 2>"$T/ruleproc-inet.log" &
	bg_pid $!
	wait_port 127.0.0.1 "$PT"
	usesettings "milter inet:127.0.0.1:$PT"
	rm -f "$T"/out/*
	is "$(msg bob@remote.test alice@example.com | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "ruleproc over inet: accepted"
	like "$(cat "$(lastmsg)" 2>/dev/null)" '^X-Rules: checked$' "ruleproc over inet: header added"
else
	skip "ruleproc not built"
fi

# ---- a scripted fake milter ----
FM=$T/fm
mkdir -p "$FM"
chmod 777 "$FM"
FS=$FM/sock
python3 "$FIX/fake-milter.py" "$FS" "$FM" 2>"$T/fake.log" &
bg_pid $!
i=0; while [ ! -S "$FS" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
# a chain that also records FOLDERS (quarantine)
cat >"$T/chain.sh" <<EOS
#!/bin/sh
printf '%s' "\${FOLDERS:-}" >"\$1/\$MXID.folders"
exec "$CHAIN" "\$@"
EOS
chmod 755 "$T/chain.sh"
CHAIN=$T/chain.sh
script() { printf '%s\n' "$1" >"$FM/script.json"; rm -f "$FM/log" "$FM/body" "$T"/out/*; }
flog() { cat "$FM/log" 2>/dev/null; }
usesettings "milter unix:$FS"

script '{}'
out=$(msg bob@remote.test alice@example.com | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "fake: all continue: accepted"
is "$(nmsg)" 1 "fake: all continue: delivered"
l=$(flog)
like "$l" '^O 6 63 [0-9]+$' "optneg: version 6, actions add/change header, body, add/del rcpt, quarantine"
like "$l" '^D C .*j=mx\.example\.com .*\{client_addr\}=127\.0\.0\.1' "connect macros j and {client_addr}"
like "$l" '^D C .*\{daemon_name\}=smtpd-lite .*\{client_name\}=unknown' "connect macros {daemon_name} {client_name}"
like "$l" '^C unknown 4 [0-9]+ 127\.0\.0\.1$' "connect: host, family, port, address"
like "$l" '^H client\.test$' "HELO"
like "$l" '^D M i=[0-9A-F]+ \{mail_addr\}=bob@remote\.test$' "MAIL macros i {mail_addr}"
like "$l" '^M <bob@remote\.test>$' "MAIL"
like "$l" '^D R \{rcpt_addr\}=alice@example\.com$' "RCPT macro {rcpt_addr}"
like "$l" '^R <alice@example\.com>$' "RCPT"
like "$l" '^L Received: from client\.test' "headers from the spool: our Received: first"
like "$l" '^L Subject: test$' "header value without the leading space"
like "$l" '^N$' "end of headers"
is "$(cat "$FM/body")" "$(printf 'Hello.\r')" "body with CRLF ends"
is "$(flog | tail -3 | tr '\n' ' ')" "D E i=$(basename "$(lastmsg)" .msg) E Q " "end of message with i, then quit"

script '{}'
talk "${E}MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.com>\r\nRSET\r\nMAIL FROM:<bob@remote.test>\r\n$Q" >/dev/null
is "$(flog | grep -v '^D' | cut -c1 | tr -d '\n')" "OCHMRAMQ" "RSET: abort, then the next MAIL; quit at the end"
like "$(flog)" '\{if_addr\}=' "connect macro {if_addr}"

# big body: chunks of at most 65535 bytes
script '{}'
python3 -c 'import sys; sys.stdout.write("EHLO c\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: big\r\n\r\n" + ("y" * 98 + "\r\n") * 2000 + ".\r\nQUIT\r\n")' >"$T/big.smtp"
out=$(TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" <"$T/big.smtp" 2>>"$T/log" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "big message accepted"
is "$(flog | grep '^B ' | awk '{ if ($2 > 65535) bad = 1; n++; s += $2 } END { print n, s, bad + 0 }')" "4 200000 0" \
   "200000-byte body in 4 chunks of at most 65535 bytes"
is "$(tail -c 10 "$(lastmsg)" | od -c | head -1 | grep -c '\\r')" 0 "delivered copy keeps LF ends"

# replies at each stage
script '{"replies": {"C": "r"}}'
like "$(msg bob@remote.test alice@example.com | codes)" "^220,250,554 5.7.1,503 5.5.1,503 5.5.1,500 5.5.2" \
   "connect reject: every transaction refused 554 5.7.1"
script '{"replies": {"H": "y:550 5.7.1 no helo for you"}}'
like "$(msg bob@remote.test alice@example.com | tr -d '\r' | sed -n 2p)" '^550 5\.7\.1 no helo for you$' "HELO reject with setreply text"
script '{"replies": {"M": "t"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '^220,250,451 4\.7\.1,' "MAIL tempfail: 451 4.7.1"
like "$(flog)" '^A$' "abort after the refused MAIL"
script '{"rcpt": {"<carol@example.com>": "y:550 5.1.1 carol is away"}}'
out=$(msg bob@remote.test carol@example.com alice@example.com | tr -d '\r')
like "$out" '^550 5\.1\.1 carol is away$' "RCPT: per-recipient reject with text"
like "$(cat "$T"/out/*.env)" '^RECIPIENTS=alice@example.com $' "RCPT: the others still get it"
script '{"rcpt": {"<carol@example.com>": "t"}}'
like "$(msg bob@remote.test carol@example.com alice@example.com | codes)" '^220,250,250 2\.1\.0,451 4\.7\.1,250 2\.1\.5,354,250' "RCPT: per-recipient tempfail"
script '{"replies": {"T": "r"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '^220,250,250 2\.1\.0,250 2\.1\.5,550 5\.7\.1,' "DATA reject before 354"
script '{"replies": {"L": "y:554 5.7.1 bad header"}}'
out=$(msg bob@remote.test alice@example.com | tr -d '\r')
like "$out" '^554 5\.7\.1 bad header$' "header reject after the dot with text"
is "$(nmsg)" 0 "header reject: nothing delivered"
script '{"replies": {"B": "t"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '354,451 4\.7\.1,221' "body tempfail: 451 4.7.1"
script '{"replies": {"E": "y:451 4.7.0 try later please"}}'
like "$(msg bob@remote.test alice@example.com | tr -d '\r')" '^451 4\.7\.0 try later please$' "end-of-message tempfail with text"
is "$(nmsg)" 0 "tempfail: nothing delivered"
script '{"replies": {"E": "d"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '354,250 2\.0\.0,221' "end-of-message discard: 250"
is "$(nmsg)" 0 "discard: nothing delivered"
script '{"replies": {"M": "d"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '354,250 2\.0\.0,221' "MAIL discard: 250 at the end"
is "$(nmsg)" 0 "MAIL discard: nothing delivered"
script '{"replies": {"N": "a"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '354,250 2\.0\.0,221' "accept at end of headers"
is "$(nmsg)" 1 "accept: delivered"
is "$(flog | grep -c '^B ')" 0 "accept: no body sent after it"
like "$(cat "$T/log")" 'milter unix:.* stage=eoh action=accept' "accept logged"

# modifications at end of message
script '{"mods": [["h", "X-Fake", "added"], ["m", 1, "Subject", "changed subject"], ["i", 0, "X-First", "top"],
  ["m", 1, "X-Gone", ""], ["b", "new body line 1\r\nline 2\r\n"], ["-", "<alice@example.com>"], ["+", "<bob@example.com>"]]}'
out=$(talk "${E}MAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: test\r\nX-Gone: bye\r\n\r\nold body\r\n.\r\n$Q" | codes)
is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "modifications: accepted"
m=$(lastmsg)
is "$(head -1 "$m")" "X-First: top" "insheader at index 0"
like "$(cat "$m")" '^Subject: changed subject$' "chgheader"
nok "chgheader with an empty value deletes" grep -q '^X-Gone' "$m"
like "$(cat "$m")" '^X-Fake: added$' "addheader"
is "$(sed '1,/^$/d' "$m")" "$(printf 'new body line 1\nline 2')" "replbody (CRLF -> LF in the spool)"
like "$(cat "$T"/out/*.env)" '^RECIPIENTS=bob@example.com $' "delrcpt + addrcpt"
like "$(cat "$T/log")" 'stage=eom addrcpt=<bob@example.com>' "addrcpt logged"
script '{"mods": [["q", "looks like a virus"]]}'
msg bob@remote.test alice@example.com >/dev/null
like "$(cat "$(lastmsg)")" '^X-Quarantine: looks like a virus$' "quarantine: X-Quarantine header"
is "$(cat "$T"/out/*.folders)" "$(printf 'alice@example.com\tQuarantine')" "quarantine: FOLDERS sends it to the Quarantine folder"
script '{"mods": [["+", "<bad address\nRCPT: x>"], ["+", "<Carol@Example.com>"]]}'
msg bob@remote.test alice@example.com >/dev/null
like "$(cat "$T"/out/*.env)" '^RECIPIENTS=alice@example.com Carol@example.com $' "addrcpt: a malformed address is ignored, a good one added"
script '{"actions": 1, "mods": [["-", "<alice@example.com>"]]}'
like "$(msg bob@remote.test alice@example.com | codes)" '354,451 4\.7\.1,221' "modification not negotiated: milter error, tempfail"

# protocol flags: skipped steps and no-reply steps
script "{\"pflags\": $((0x2 | 0x4 | 0x20 | 0x40 | 0x10 | 0x200))}"
is "$(msg bob@remote.test alice@example.com | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "NOHELO NOMAIL NOHDRS NOEOH NOBODY NODATA: accepted"
is "$(flog | grep -v '^D' | cut -c1 | tr -d '\n')" "OCREQ" "only connect, RCPT, end of message and quit sent"
script "{\"pflags\": $((0x1 | 0x8000 | 0x80 | 0x80000)), \"replies\": {\"R\": \"close\"}}"
is "$(msg bob@remote.test alice@example.com | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "NOCONNECT, NR_RCPT NR_HDR NR_BODY: no replies awaited"
nok "NOCONNECT: no connect sent" grep -q '^C ' "$FM/log"
script "{\"pflags\": $((0x400)), \"replies\": {\"B\": \"s\"}}"
TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" <"$T/big.smtp" 2>>"$T/log" >/dev/null
is "$(flog | grep -c '^B ')" 1 "SKIP: no more body chunks after the first"
is "$(nmsg)" 1 "SKIP: delivered"

# timeouts and a dead milter: the default action
usesettings "milter unix:$FS" "milter_command_timeout 1"
script '{"replies": {"M": "sleep:3"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '^220,250,451 4\.7\.1,' "command timeout: 451 4.7.1 (default tempfail)"
is "$(nmsg)" 0 "command timeout: nothing delivered"
like "$(cat "$T/log")" 'stage=mail failed: timeout; default_action=tempfail' "timeout logged"
usesettings "milter unix:$FS command_timeout=1 default_action=accept"
script '{"replies": {"M": "sleep:3"}}'
is "$(msg bob@remote.test alice@example.com | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "per-milter default_action=accept: accepted"
is "$(nmsg)" 1 "default_action=accept: delivered without the milter"
usesettings "milter unix:$FS content_timeout=1"
script '{"replies": {"E": "sleep:3"}}'
like "$(msg bob@remote.test alice@example.com | codes)" '354,451 4\.7\.1,221' "content timeout at end of message: 451 4.7.1"
is "$(nmsg)" 0 "content timeout: nothing delivered"
usesettings "milter unix:$T/no-such.sock"
like "$(msg bob@remote.test alice@example.com | codes)" '^220,250,451 4\.7\.1,' "dead milter: 451 4.7.1 at MAIL"
is "$(nmsg)" 0 "dead milter: nothing delivered"
usesettings "milter unix:$T/no-such.sock" "milter_default_action reject"
like "$(msg bob@remote.test alice@example.com | codes)" '^220,250,550 5\.7\.1,' "dead milter, milter_default_action reject: 550 5.7.1"
usesettings "milter unix:$T/no-such.sock default_action=accept"
like "$(msg bob@remote.test alice@example.com | codes)" '354,250 2\.0\.0,221' "dead milter, default_action=accept: accepted"
is "$(nmsg)" 1 "dead milter, accept: delivered"
script '{"replies": {"R": "close"}}'
usesettings "milter unix:$FS"
like "$(msg bob@remote.test alice@example.com | codes)" '^220,250,250 2\.1\.0,451 4\.7\.1,' "milter hangs up at RCPT: 451 4.7.1"
# two milters in order: the first one's header is seen by the second
usesettings "milter unix:$FS" "milter unix:$FS"
script '{"mods": [["h", "X-Fake", "added"]]}'
msg bob@remote.test alice@example.com >/dev/null
is "$(grep -c '^X-Fake: added' "$(lastmsg)")" 2 "two milters: both applied"
like "$(flog)" '^L X-Fake: added$' "the second milter sees the first one's header"

# ---- OpenDKIM from Debian: signing, then verify mode ----
if command -v opendkim >/dev/null && command -v opendkim-genkey >/dev/null; then
	D=$T/dkim
	mkdir -p "$D"
	opendkim-genkey -D "$D" -d example.com -s sel
	# the public key as TestPublicKeys wants it: "name TXT-data"
	printf 'sel._domainkey.example.com %s\n' "$(tr -d '\n\t' <"$D/sel.txt" | sed 's/^[^(]*( *//; s/ *).*//; s/" *"//g; s/"//g')" >"$D/pubkeys"
	echo "sel._domainkey.example.com example.com:sel:$D/sel.private" >"$D/keytable"
	echo "*@example.com sel._domainkey.example.com" >"$D/signingtable"
	common="Background no
Syslog no
UMask 000
RequireSafeKeys false
Canonicalization relaxed/relaxed"
	printf '%s\nMode s\nSocket local:%s\nKeyTable %s\nSigningTable refile:%s\nInternalHosts 127.0.0.0/8\n' \
	    "$common" "$D/sign.sock" "$D/keytable" "$D/signingtable" >"$D/sign.conf"
	printf '%s\nMode v\nSocket local:%s\nTestPublicKeys %s\nAuthservID mx.example.com\nInternalHosts 192.0.2.254\n' \
	    "$common" "$D/verify.sock" "$D/pubkeys" >"$D/verify.conf"
	opendkim -f -x "$D/sign.conf" 2>"$D/sign.log" &
	bg_pid $!
	opendkim -f -x "$D/verify.conf" 2>"$D/verify.log" &
	bg_pid $!
	i=0; while { [ ! -S "$D/sign.sock" ] || [ ! -S "$D/verify.sock" ]; } && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	# signing: mail from a relay client (127.0.0.2 in the sample access
	# table) with a From: in example.com, relayed out
	usesettings "milter unix:$D/sign.sock"
	rm -f "$T"/out/*
	out=$(IP=127.0.0.2 talk "${E}MAIL FROM:<alice@example.com>\r\nRCPT TO:<someone@elsewhere.test>\r\nDATA\r\nFrom: Alice <alice@example.com>\r\nTo: someone@elsewhere.test\r\nSubject: signed\r\n\r\nThis message is signed.\r\n.\r\n$Q" | codes)
	is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "opendkim signing: relayed message accepted"
	signed=$T/signed.msg
	cp "$(lastmsg)" "$signed" 2>/dev/null
	like "$(cat "$signed" 2>/dev/null)" '^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;' "opendkim signing: DKIM-Signature in the relayed copy"
	# verify mode on the signed copy: Authentication-Results dkim=pass
	usesettings "milter unix:$D/verify.sock"
	rm -f "$T"/out/*
	{ printf 'EHLO out.example.com\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n'
	  sed 's/^\./../; s/$/\r/' "$signed"
	  printf '.\r\nQUIT\r\n'; } >"$T/signed.smtp"
	out=$(TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" <"$T/signed.smtp" 2>>"$T/log" | codes)
	is "$out" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "opendkim verify: incoming signed message accepted"
	like "$(cat "$(lastmsg)" 2>/dev/null)" '^Authentication-Results: mx\.example\.com;' "opendkim verify: Authentication-Results added"
	like "$(cat "$(lastmsg)" 2>/dev/null | tr -d '\n')" 'dkim=pass' "opendkim verify: the signature made through smtpd-lite verifies (dkim=pass)"
	# a changed body fails
	rm -f "$T"/out/*
	sed 's/This message is signed/This message was changed/' "$T/signed.smtp" >"$T/forged.smtp"
	TCPREMOTEIP=127.0.0.1 smtpd-lite -c "$T/conf" $CHAIN "$T/out" <"$T/forged.smtp" 2>>"$T/log" >/dev/null
	like "$(cat "$(lastmsg)" 2>/dev/null | tr -d '\n')" 'dkim=fail' "opendkim verify: a changed body gives dkim=fail"
else
	skip "opendkim not installed (apt-get install opendkim opendkim-tools)"
fi

# ---- clamav-milter from Debian, with a signature made here ----
if command -v clamd >/dev/null && command -v clamav-milter >/dev/null && command -v sigtool >/dev/null; then
	CL=$T/clam
	mkdir -p "$CL/db"
	echo "Mx.Test.Marker:0:*:$(printf 'MXTESTVIRUSMARKER-4711' | sigtool --hex-dump | tr -d '\n')" >"$CL/db/mxtest.ndb"
	printf 'LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nLogFile %s\n' \
	    "$CL/clamd.sock" "$CL/db" "$CL/clamd.log" >"$CL/clamd.conf"
	printf 'MilterSocket unix:%s\nMilterSocketMode 666\nClamdSocket unix:%s\nForeground yes\nOnInfected Reject\nLogFile %s\nFixStaleSocket yes\n' \
	    "$CL/milter.sock" "$CL/clamd.sock" "$CL/milter.log" >"$CL/milter.conf"
	clamd -c "$CL/clamd.conf" >"$CL/clamd.out" 2>&1 &
	bg_pid $!
	i=0; while [ ! -S "$CL/clamd.sock" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	clamav-milter -c "$CL/milter.conf" >"$CL/milter.out" 2>&1 &
	bg_pid $!
	i=0; while [ ! -S "$CL/milter.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	usesettings "milter unix:$CL/milter.sock"
	rm -f "$T"/out/*
	is "$(msg bob@remote.test alice@example.com | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "clamav-milter: a clean message is accepted"
	is "$(nmsg)" 1 "clamav-milter: clean message delivered"
	rm -f "$T"/out/*
	out=$(BODY='here it comes: MXTESTVIRUSMARKER-4711 end' msg bob@remote.test alice@example.com | tr -d '\r')
	like "$(printf '%s\n' "$out" | codes)" '354,5[0-9][0-9] 5\.[0-9]\.[0-9],221' "clamav-milter: the test signature is rejected after the dot"
	is "$(nmsg)" 0 "clamav-milter: infected message not delivered"
	like "$(cat "$T/log")" 'milter unix:.*clam/milter.sock stage=eom action=reject' "clamav-milter: decision logged"
else
	skip "clamav-milter not installed (apt-get install clamav-daemon clamav-milter)"
fi

# ---- rspamd (Debian) as a milter: proxy worker with milter = yes ----
if command -v rspamd >/dev/null && [ -d /etc/rspamd ]; then
	RS=$T/rspamd
	mkdir -p "$RS/db" "$RS/run"
	chmod 777 "$RS/db" "$RS/run"
	cp -r /etc/rspamd "$RS/conf"
	RP=$(free_port)
	printf 'bind_socket = "127.0.0.1:%s";\nmilter = yes;\ntimeout = 30s;\nupstream "local" { default = yes; self_scan = yes; }\n' "$RP" >"$RS/conf/local.d/worker-proxy.inc"
	for w in controller normal fuzzy; do echo 'enabled = false;' >"$RS/conf/local.d/worker-$w.inc"; done
	# no network: a resolver that answers nothing, quickly
	echo 'dns { nameserver = ["127.0.0.1:1"]; timeout = 0.5s; retransmits = 1; }' >"$RS/conf/local.d/options.inc"
	echo 'type = "console"; level = "error";' >"$RS/conf/local.d/logging.inc"
	rspamd -f -i -c "$RS/conf/rspamd.conf" --var=CONFDIR="$RS/conf" --var=LOCAL_CONFDIR="$RS/conf" \
	    --var=DBDIR="$RS/db" --var=RUNDIR="$RS/run" -u nobody -g nogroup >"$RS/out.log" 2>&1 &
	bg_pid $!
	i=0; while ! python3 -c "import socket; socket.create_connection(('127.0.0.1',$RP),0.2).close()" 2>/dev/null && [ $i -lt 90 ]; do sleep 0.5; i=$((i + 1)); done
	usesettings "milter inet:127.0.0.1:$RP content_timeout=40"
	rm -f "$T"/out/*
	is "$(msg bob@remote.test alice@example.com | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "rspamd: an ordinary message is accepted"
	is "$(nmsg)" 1 "rspamd: delivered"
	rm -f "$T"/out/*
	out=$(BODY='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X' msg bob@remote.test alice@example.com | tr -d '\r')
	like "$(printf '%s\n' "$out" | codes)" '354,5[0-9][0-9] 5\.[0-9]\.[0-9],221' "rspamd: GTUBE rejected after the dot"
	is "$(nmsg)" 0 "rspamd: GTUBE message not delivered"
else
	skip "rspamd not installed (apt-get install rspamd)"
fi
