# End to end: a trusted client (127.0.0.2, "relay" in the sample access
# table) sends through smtpd-lite (own listener) -> deliver -> the queue;
# the runner delivers to Postfix's smtp-sink, exactly once, body intact.
# An untrusted client's relay attempt never reaches the queue. Backup MX:
# mail for backup.example from anyone is queued, held while the primary
# is down and delivered when it returns.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
if [ ! -x "$BIN/smtpd-lite" ]; then skip "smtpd-lite not built"; exit 0; fi
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
if [ ! -x "$SINK" ]; then skip "smtp-sink (postfix) not installed"; exit 0; fi
if ! python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0))' 2>/dev/null; then
	skip "cannot use 127.0.0.2 as a client address"; exit 0
fi
qconf
PS=$(free_port)
PB=$(free_port)
PL=$(free_port)
printf 'foreign.test [127.0.0.1]:%s\nbackup.example [127.0.0.1]:%s\n' "$PS" "$PB" >"$C/routes"
mkcdb -c "$C" >/dev/null
chmod -R a+rX "$C"

# Postfix's smtp-sink as the remote server: one file per message
mkdir -p "$T/pf" "$T/pfb"
chown postfix "$T/pf" "$T/pfb" 2>/dev/null
su_opt=""; [ "$(id -u)" = 0 ] && su_opt="-u postfix"
"$SINK" $su_opt -d "$T/pf/%M." "127.0.0.1:$PS" 100 2>"$T/sink.err" &
bg_pid $!
wait_port 127.0.0.1 "$PS" || { echo "not ok - smtp-sink starts"; exit 1; }

smtpd-lite -c "$C" -l "127.0.0.1:$PL" 2>"$T/smtpd.log" &
bg_pid $!
wait_port 127.0.0.1 "$PL" || { echo "not ok - smtpd-lite listens"; sed 's/^/#   /' "$T/smtpd.log"; exit 1; }
mxqueue -c "$C" run -f 2>"$T/runner.log" &
bg_pid $!

send() {	# send FROM_IP RCPT BODY: prints the RCPT reply code (and DATA's)
	python3 - "$PL" "$1" "$2" "$3" <<'EOF'
import smtplib, sys
port, src, rcpt, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.SMTP("127.0.0.1", port, source_address=(src, 0), timeout=20)
s.ehlo("client.test")
s.mail("sender@example.com")
code, msg = s.rcpt(rcpt)
out = [str(code)]
if code == 250:
    s.putcmd("data")
    c, m = s.getreply()
    msgtext = ("From: sender@example.com\r\nTo: %s\r\nSubject: e2e\r\n\r\n%s\r\n" % (rcpt, body))
    s.send(smtplib.quotedata(msgtext).encode() + b"\r\n.\r\n")
    c, m = s.getreply()
    out.append(str(c))
s.quit()
print(" ".join(out))
EOF
}

# trusted client relays to a foreign domain
is "$(send 127.0.0.2 friend@foreign.test 'relayed body
.dot line
end')" "250 250" "trusted client 127.0.0.2: relay accepted (250 after DATA)"
ok "the runner delivers it to smtp-sink" wait_for 'test "$(ls "$T/pf" | wc -l)" -eq 1'
ok "queue empty afterwards" wait_for 'test "$(qn)" -eq 0'
sleep 1
is "$(ls "$T/pf" | wc -l | tr -d ' ')" 1 "exactly once"
f=$(ls "$T"/pf/* | head -n 1)
is "$(grep '^X-Rcpt-Args:' "$f")" "X-Rcpt-Args: <friend@foreign.test>" "smtp-sink: the envelope recipient"
is "$(grep '^X-Mail-Args:' "$f" | cut -d' ' -f2)" "<sender@example.com>" "smtp-sink: the envelope sender"
ok "body intact (dot line)" grep -q '^\.dot line$' "$f"
ok "body intact (last line)" grep -q '^end$' "$f"
ok "smtpd-lite's Received: travels with it" grep -q '^Received: from client.test' "$f"

# untrusted client: relaying refused, nothing queued
is "$(send 127.0.0.1 stranger@foreign.test 'x')" "554" "untrusted client: 554 for a foreign recipient"
sleep 0.5
is "$(ls "$Q/mess" | wc -l | tr -d ' ')" 0 "untrusted relay attempt: nothing in the queue"
is "$(ls "$T/pf" | wc -l | tr -d ' ')" 1 "untrusted relay attempt: nothing sent"

# backup MX: accepted from anyone, held while the primary is down
is "$(send 127.0.0.1 user@backup.example 'for the primary')" "250 250" "backup domain: accepted from an ordinary client"
ok "backup domain: queued" wait_for 'test "$(qn)" -eq 1'
sleep 1.5
is "$(qn)" 1 "primary down: held in the queue"
like "$(grep '^rcpt' "$Q"/info/* | cut -f 12)" '^4\.4\.1 cannot connect' "primary down: 4.4.1"
"$SINK" $su_opt -d "$T/pfb/%M." "127.0.0.1:$PB" 100 2>>"$T/sink.err" &
bg_pid $!
wait_port 127.0.0.1 "$PB"
ok "primary back: delivered on a retry" wait_for 'test "$(ls "$T/pfb" | wc -l)" -eq 1'
ok "and removed from the queue" wait_for 'test "$(qn)" -eq 0'
ok "backup MX copy intact" grep -q '^for the primary$' "$T"/pfb/*
