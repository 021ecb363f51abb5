#!/bin/sh
# smtpd-lite as a milter client (issue 9): ruleproc -m driven by
# smtpd-lite (header added, recipient redirected, rejects with the
# rule's text at the right stage); a scripted fake milter
# (t/fixtures/fake-milter.py) for each reply at each stage, the EOM
# modifications, protocol flags, timeouts and a dead milter.
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
else
	skip "ruleproc not built"
fi
