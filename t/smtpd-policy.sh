#!/bin/sh
# smtpd-lite: the policy chain (Postfix policy delegation protocol):
# relaycheck first, then exec:/unix:/inet: services; every action; a
# dead, slow or confused service gives 451 4.3.0, never acceptance;
# a client denied at connect; greylisting with Debian's postgrey.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
smtpd_setup "timeout_policy 2"
cp "$T/conf/settings" "$T/settings.base"
P=$T/pol
usepol() {	# usepol SETTINGS-LINE...: fresh settings, empty action files
	cp "$T/settings.base" "$T/conf/settings"
	for l in "$@"; do echo "$l" >>"$T/conf/settings"; done
	rm -f "$P"/CONNECT "$P"/EHLO "$P"/HELO "$P"/MAIL "$P"/RCPT* "$P"/log
}
act() { printf '%s\n' "$2" >"$P/$1"; }
E='EHLO client.test\r\n'
M='MAIL FROM:<bob@remote.test>\r\n'
R='RCPT TO:<alice@example.com>\r\n'
Q='QUIT\r\n'
rcpt_reply() {	# the reply to one RCPT
	talk "$E$M${1:-$R}$Q" | tr -d '\r' | sed -n 8p
}

# relaycheck alone (the sample conf).
usepol
IP=127.0.0.3
out=$(talk "${E}NOOP\r\n$M$Q" | tr -d '\r')
like "$(echo "$out" | sed -n 1p)" '^554 5\.7\.1 ' "denied client (127.0.0.3): 554 5.7.1 greeting"
is "$(echo "$out" | codes)" "554 5.7.1,503 5.7.1,503 5.7.1,503 5.7.1,221 2.0.0" "denied client: only QUIT is honoured"
IP=127.0.0.2
is "$(talk "$E${M}RCPT TO:<someone@elsewhere.test>\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,221 2.0.0" "relay client (127.0.0.2): foreign recipient accepted"
IP=127.0.0.1
is "$(talk "$E${M}RCPT TO:<someone@elsewhere.test>\r\n$Q" | codes)" "220,250,250 2.1.0,554 5.7.1,221 2.0.0" "ordinary client: relaying denied 554 5.7.1"
is "$(talk "$E${M}RCPT TO:<someone%elsewhere.test@example.com>\r\nRCPT TO:<\"a@elsewhere.test\"@example.com>\r\n$Q" | codes)" \
   "220,250,250 2.1.0,550 5.1.1,550 5.1.1,221 2.0.0" "percent hack and quoted local part are not relayed"

# ruleproc's envelope rules join the policy chain when CONFDIR/rules exists.
if [ -x "$BIN/ruleproc" ]; then
	[ -f "$T/conf/rules" ] && cp "$T/conf/rules" "$T/rules.keep"
	printf 'rule "No junk senders"\n    sender *@junk.example\n    reject 550 5.7.1 "No junk here"\n' >"$T/conf/rules"
	is "$(talk "${E}MAIL FROM:<a@junk.example>\r\n$M$Q" | codes)" "220,250,550 5.7.1,250 2.1.0,221 2.0.0" "CONFDIR/rules: ruleproc -p asked after relaycheck"
	like "$(cat "$T/log")" 'rejected service=ruleproc reply=550 5\.7\.1 No junk here' "the deciding service is logged"
	# mx_stages: asked at CONNECT, each built-in service names the stages
	# where it can still answer something but DUNNO; the others are skipped
	stages_asked() {	# requests sent to the built-in services, per stage
		strace -f -qq -s 4096 -e trace=sendto,write -o "$T/st" sh -c \
		    "printf '$E${M}RCPT TO:<alice@example.com>\r\n$Q' | TCPREMOTEIP=127.0.0.1 smtpd-lite -c '$T/conf' $CHAIN '$T/out'" \
		    >/dev/null 2>>"$T/log"
		for st in CONNECT EHLO MAIL RCPT; do
			printf '%s=%s ' $st "$(grep -c "protocol_state=$st" "$T/st")"
		done
	}
	if command -v strace >/dev/null; then
		is "$(stages_asked)" "CONNECT=2 EHLO=0 MAIL=1 RCPT=2 " \
		    "a MAIL-stage reject rule: ruleproc asked from MAIL on, relaycheck at CONNECT and RCPT"
		printf 'rule "Attachments"\n    attachment *.exe\n    reject 550 5.7.1 "No"\n' >"$T/conf/rules"
		printf 'rule "Junk"\n    sender *@junk.example\n    reject 550 5.7.1 "No junk here"\n' >>"$T/conf/rules"
		is "$(stages_asked)" "CONNECT=2 EHLO=0 MAIL=0 RCPT=1 " \
		    "a DATA rule first: ruleproc asked at CONNECT only (no later rule decides before DATA)"
		printf 'rule "Nets"\n    client 10.0.0.0/8\n    tempfail 451 4.7.1 "later"\n' >"$T/conf/rules"
		is "$(stages_asked)" "CONNECT=2 EHLO=1 MAIL=1 RCPT=2 " "a client rule: ruleproc asked at every stage"
		like "$(grep -c 'mx_stages=query' "$T/st")" '^2$' "only the CONNECT requests carry the query"
		# both built-in services get their CONNECT request before either
		# answer is read: they answer side by side
		strace -f -qq -s 200 -e trace=sendto,read -o "$T/st2" sh -c \
		    "printf '$E$Q' | TCPREMOTEIP=127.0.0.1 smtpd-lite -c '$T/conf' $CHAIN '$T/out'" \
		    >/dev/null 2>>"$T/log"
		is "$(grep -E 'sendto\(.*protocol_state=CONNECT|read\(.*"action=' "$T/st2" | head -n 3 |
		    sed -e 's/.*protocol_state=CONNECT.*/ask/' -e 's/.*"action=.*/answer/' | tr '\n' ' ')" \
		    "ask ask answer " "CONNECT: both built-in services asked before the first answer is read"
		printf 'rule "Nets"\n    client 127.0.0.0/8\n    reject 554 5.7.1 "not you"\n' >"$T/conf/rules"
		is "$(IP=127.0.0.3 talk "$E$M$Q" | codes)" "554 5.7.1,503 5.7.1,503 5.7.1,221 2.0.0" \
		    "relaycheck refuses at CONNECT: ruleproc's answer, asked ahead, is read and dropped"
		is "$(talk "$E$M$Q" | codes)" "554 5.7.1,503 5.7.1,503 5.7.1,221 2.0.0" \
		    "ruleproc refuses at CONNECT after relaycheck's DUNNO"
	else
		skip "strace not installed: the stages asked are not counted"
	fi
	rm -f "$T/conf/rules"
	[ -f "$T/rules.keep" ] && mv "$T/rules.keep" "$T/conf/rules"
else
	skip "ruleproc not built: rules in the policy chain not tested"
fi

# An exec: co-process after relaycheck.
usepol "policy exec:$FIX/smtpd-policy.sh $P"
is "$(talk "$E$M${R}DATA\r\nx\r\n.\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "DUNNO everywhere: accepted"
log=$(cat "$P/log")
for a in request=smtpd_access_policy protocol_state=CONNECT protocol_state=EHLO protocol_state=MAIL \
    protocol_state=RCPT client_address=127.0.0.1 helo_name=client.test sender=bob@remote.test \
    recipient=alice@example.com protocol_name=ESMTP 'instance=[0-9A-F]+\.1'; do
	like "$log" "^$a\$" "request has $a"
done
is "$(grep -c '^protocol_state=' "$P/log")" 4 "one co-process answers all four stages"
is "$(grep -c 'mx_stages' "$P/log")" 0 "a site's service never sees our mx_stages query"

act RCPT "REJECT go away"
is "$(rcpt_reply)" "554 5.7.1 go away" "REJECT text: 554 5.7.1 text"
act RCPT "REJECT"
is "$(rcpt_reply)" "554 5.7.1 Access denied" "REJECT: 554 5.7.1"
act RCPT "reject 5.7.0 lower case"
is "$(rcpt_reply)" "554 5.7.0 lower case" "reject (any case) with an enhanced code"
act RCPT "DEFER come back later"
is "$(rcpt_reply)" "450 4.7.1 come back later" "DEFER: 450 4.7.1"
act RCPT "DEFER_IF_PERMIT greylisted"
is "$(rcpt_reply)" "450 4.7.1 greylisted" "DEFER_IF_PERMIT then permit: 450 4.7.1"
act RCPT "550 5.1.1 no such user"
is "$(rcpt_reply)" "550 5.1.1 no such user" "5xx text as given"
act RCPT "452 slow down"
is "$(rcpt_reply)" "452 4.7.1 slow down" "4xx text gets an enhanced code"
act RCPT "OK"
is "$(rcpt_reply "RCPT TO:<x@elsewhere.test>\r\n")" "554 5.7.1 <x@elsewhere.test>: Relay access denied" \
   "a later service's OK cannot override relaycheck: still no relay"
act RCPT "FROBNICATE now"
is "$(rcpt_reply)" "451 4.3.0 Policy service failure, try again later" "unknown action: 451 4.3.0"
act RCPT "421 4.7.0 go away now"
is "$(talk "$E$M$R$Q" | codes)" "220,250,250 2.1.0,421 4.7.0" "421 action: reply and close"
act RCPT "INFO just saying"
is "$(rcpt_reply)" "250 2.1.5 Ok" "INFO: goes on"

act RCPT "DISCARD"
rm -f "$T"/out/*
is "$(talk "$E$M${R}DATA\r\nx\r\n.\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "DISCARD: the client is told 250"
is "$(nmsg)" 0 "DISCARD: nothing handed to the chain"
act RCPT "PREPEND X-Policy-Test: yes"
talk "$E$M${R}DATA\r\nSubject: p\r\n\r\nx\r\n.\r\n$Q" >/dev/null
is "$(sed -n 1p "$(lastmsg)")" "X-Policy-Test: yes" "PREPEND: header added on top"
act RCPT DUNNO
act EHLO "PREPEND X-Helo-Check: seen"
act CONNECT "PREPEND X-Connect-Check: seen"
talk "$E$E$E$M${R}DATA\r\nx\r\n.\r\n$Q" >/dev/null
is "$(grep -c '^X-Helo-Check: seen$' "$(lastmsg)")" 1 "PREPEND at EHLO: once, however many EHLOs"
is "$(grep -c '^X-Connect-Check: seen$' "$(lastmsg)")" 1 "PREPEND at CONNECT kept for the session"
rm -f "$P/EHLO" "$P/CONNECT"
act RCPT "REDIRECT carol@example.com"
talk "$E$M${R}RCPT TO:<bob@example.com>\r\nDATA\r\nx\r\n.\r\n$Q" >/dev/null
like "$(cat "$T/out/$(basename "$(lastmsg)" .msg).env")" '^RECIPIENTS=carol@example\.com $' "REDIRECT: the message goes to the new address only"
act RCPT DUNNO
act MAIL "REJECT no mail from you"
is "$(talk "$E$M$R$Q" | codes)" "220,250,554 5.7.1,503 5.5.1,221 2.0.0" "MAIL stage REJECT"
rm -f "$P/MAIL"
act EHLO "REJECT 5.7.1 bad helo"
is "$(talk "$E$M$Q" | codes)" "220,554 5.7.1,503 5.5.1,221 2.0.0" "EHLO stage REJECT: no HELO recorded"
rm -f "$P/EHLO"
act CONNECT "REJECT 5.7.1 not you"
out=$(talk "${E}$Q" | tr -d '\r')
is "$(echo "$out" | sed -n 1p)" "554 5.7.1 not you" "CONNECT REJECT: 554 greeting"
is "$(echo "$out" | codes)" "554 5.7.1,503 5.7.1,221 2.0.0" "CONNECT REJECT: only QUIT"
act CONNECT "DEFER busy"
is "$(talk "${E}$Q" | tr -d '\r')" "421 4.7.1 busy" "CONNECT DEFER: 421 and close"
rm -f "$P/CONNECT"

# Failing services: 451 4.3.0, never acceptance.
for how in '!garbage' '!noaction' '!die' '!sleep'; do
	act RCPT "$how"
	start=$(date +%s)
	like "$(rcpt_reply)" "^451 4\.3\.0 Policy service" "service $how: 451 4.3.0"
	[ "$how" = '!sleep' ] && ok "slow service: given up after timeout_policy" test $(( $(date +%s) - start )) -lt 8
done
usepol "policy exec:/nonexistent/policy"
is "$(talk "$Q" | codes)" "421 4.3.0" "service that cannot start: 421 4.3.0 at connect"
bport=$(free_port)
usepol "policy inet:127.0.0.1:$bport"
like "$(rcpt_reply)" "^451 4\.3\.0 " "inet: service not listening: 451 4.3.0 at RCPT"
usepol "policy unix:$T/nothing.sock connect,rcpt"
is "$(talk "$Q" | codes)" "421 4.3.0" "unix: service not there, asked at connect: 421 4.3.0"
cp "$T/settings.base" "$T/conf/settings"
echo "bindir $T/nobin" >>"$T/conf/settings"
is "$(talk "$Q" | codes)" "421 4.3.0" "relaycheck missing: 421 4.3.0 (fail closed)"

# unix: and inet: services (a small Python policy server).
port=$(free_port)
python3 "$FIX/smtpd-policy-server.py" "inet:$port" "$P" & bg_pid $!
python3 "$FIX/smtpd-policy-server.py" "unix:$T/pol.sock" "$P" & bg_pid $!
i=0; while [ ! -S "$T/pol.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
wait_port 127.0.0.1 "$port"
usepol "policy unix:$T/pol.sock" "policy inet:127.0.0.1:$port"
is "$(rcpt_reply)" "250 2.1.5 Ok" "unix: and inet: services: DUNNO"
is "$(grep -c '^RCPT alice@example.com' "$P/log")" 2 "both socket services were asked"
is "$(grep -c -v '^RCPT' "$P/log")" 0 "socket services are asked at RCPT only by default"
usepol "policy unix:$T/pol.sock connect,helo,mail,rcpt"
talk "$E$M$R$Q" >/dev/null
is "$(cut -d' ' -f1 "$P/log" | tr '\n' ' ')" "CONNECT EHLO MAIL RCPT " "socket service with a stage list: asked at each"
act RCPT "REJECT 5.7.1 by socket"
is "$(rcpt_reply)" "554 5.7.1 by socket" "unix: service REJECT"

# Greylisting with postgrey: first attempt deferred, later accepted.
if command -v postgrey >/dev/null 2>&1 && id postgrey >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	gport=$(free_port)
	mkdir -p "$T/pg" && chown postgrey "$T/pg"
	postgrey --inet=127.0.0.1:$gport --dbdir="$T/pg" --delay=2 --user=postgrey \
	    --pidfile="$T/pg/pid" --whitelist-clients=/dev/null --whitelist-recipients=/dev/null \
	    --auto-whitelist-clients=0 2>>"$T/pg.log" & bg_pid $!
	if wait_port 127.0.0.1 "$gport"; then
		usepol "policy inet:127.0.0.1:$gport"
		like "$(rcpt_reply)" '^450 4\.[0-9]\.[0-9] .*[Gg]reylist' "postgrey: first attempt greylisted (450)"
		sleep 3
		rm -f "$T"/out/*
		is "$(talk "$E$M${R}DATA\r\nx\r\n.\r\n$Q" | codes)" "220,250,250 2.1.0,250 2.1.5,354,250 2.0.0,221 2.0.0" "postgrey: retry after the delay accepted"
		like "$(cat "$(lastmsg)")" '^X-Greylist: ' "postgrey: its PREPEND header is in the message"
	else
		echo "not ok - postgrey did not start"; sed 's/^/#   /' "$T/pg.log"
	fi
else
	skip "postgrey not installed (or not root): greylisting not tested"
fi
