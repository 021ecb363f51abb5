#!/bin/sh
# Fork servers (setting fork_servers, smtpd-lite's own listener -l):
# relaycheck -p, ruleproc -p and the delivery chain (ruleproc -> deliver,
# deliver itself a fork server under ruleproc) are started once and fork
# a child per session or message instead of an exec. End to end with
# smtplib: no execve per message (strace), servers killed and restarted,
# rules and tables reloaded without restart, a custom chain, the setting
# off, SIGTERM, and deliver failures still answered 4xx/5xx.
. "$(dirname "$0")/lib.sh"
newconf
chmod -R a+rX "$T/conf"

# c.py PORT FROM RCPT [SUBJECT [SRCIP]]: one message; prints
# "MAILCODE RCPTCODE DATACODE | last reply text" ("-" for steps not taken)
cat >"$T/c.py" <<'EOF'
import smtplib, sys
port, frm, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
subj = sys.argv[4] if len(sys.argv) > 4 else "hello"
src = (sys.argv[5], 0) if len(sys.argv) > 5 else None
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30, source_address=src)
s.ehlo("client.test")
m = r = d = "-"; text = b""
m, text = s.mail(frm)
if m == 250:
    r, text = s.rcpt(rcpt)
    if r == 250:
        d, text = s.data("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nHello.\r\n" % (frm, rcpt, subj))
print(m, r, d, "|", text.decode(errors="replace"))
s.quit()
EOF
send() { python3 "$T/c.py" "$port" "$@" 2>&1; }
nmail() { ls "$T/mail/$1/new" 2>/dev/null | wc -l | tr -d ' '; }
srvpid() { sed -n "s/.*fork server $1 started, pid \([0-9]*\).*/\1/p" "$T/log" | tail -n 1; }
nstarted() { grep -c "fork server $1 started" "$T/log"; }
alive() { kill -0 "$1" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }
# wait up to $2 tenths of a second for command $1... to succeed
waitfor() { _w=$1; shift; i=0; until "$@"; do [ $i -ge "$_w" ] && return 1; sleep 0.1; i=$((i + 1)); done; }
logged() { grep -q -- "$1" "$T/log"; }
delivpid() { pgrep -P "$1" -x deliver | head -n 1; }

start_listener() {
	port=$(free_port)
	smtpd-lite -c "$T/conf" -l 127.0.0.1:$port 2>>"$T/log" & lpid=$!
	bg_pid $lpid
	wait_port 127.0.0.1 $port || echo "not ok - the listener did not start"
}
stop_listener() {
	if [ -n "${KEEP:-}" ]; then cp "$T/log" "$T/log.$lpid"; fi	# for debugging
	kill -TERM $lpid 2>/dev/null
	waitfor 50 gone $lpid
	wait $lpid 2>/dev/null
}

# ---- 1. the servers start; mail delivered, relay refused ----
start_listener
log=$(cat "$T/log")
like "$log" 'fork server relaycheck started, pid [0-9]+' "relaycheck -p started as a fork server"
like "$log" 'fork server ruleproc started, pid [0-9]+' "ruleproc -p started as a fork server (conf/rules exists)"
like "$log" 'fork server chain started, pid [0-9]+' "the chain (ruleproc -> deliver) started as a fork server"
rc=$(srvpid relaycheck) rp=$(srvpid ruleproc) ch=$(srvpid chain)
for p in $rc $rp $ch; do bg_pid $p; done
ok "the three servers run" kill -0 $rc $rp $ch
like "$(ps -o args= -p $ch)" 'ruleproc -c .*deliver -c ' "the chain server is ruleproc -c CONF deliver -c CONF"
waitfor 30 test -n "$(delivpid $ch)"
dl=$(delivpid $ch); bg_pid $dl
like "$dl" '^[0-9]+$' "ruleproc's chain server started deliver as a fork server (its child)"
like "$(send bob@remote.test alice@example.com)" '^250 250 250 \| 2\.0\.0 Ok ' "a message to alice@example.com: 250"
is "$(nmail alice)" 1 "delivered: one file in alice/new/"
like "$(send bob@remote.test x@elsewhere.test)" '^250 5[0-9][0-9] - ' "a foreign recipient is refused (no relay)"
like "$(send '' postmaster@example.com)" '^250 250 250 ' "null sender to postmaster (alias to alice): 250"
is "$(nmail alice)" 2 "... delivered to alice"

# ---- 2. no exec per session or message ----
if command -v strace >/dev/null; then
	dl=$(delivpid $ch)
	ss=$(srvpid sessions)
	workers=$(pgrep -P $ss -x smtpd-lite | sed 's/^/-p /' | tr '\n' ' ')
	strace -f -qq -e trace=execve,accept,accept4 -o "$T/strace" \
	    -p $ss $workers -p $rc -p $rp -p $ch -p $dl 2>"$T/strace.err" & st=$!
	bg_pid $st
	strace -qq -o "$T/strace.l" -p $lpid 2>/dev/null & stl=$!	# every call
	bg_pid $stl
	sleep 1
	if alive $st; then
		before=$(nmail alice)
		for i in 1 2 3; do send bob@remote.test alice@example.com "strace $i" >>"$T/strace.out"; done
		sleep 0.3
		kill -INT $st $stl; wait $st $stl 2>/dev/null
		is "$(grep -c '^250 250 250 ' "$T/strace.out")" 3 "3 messages accepted while traced"
		is "$(nmail alice)" $((before + 3)) "... and delivered"
		accepts=$(grep -Ec 'accept4?\([0-9]+, \{sa_family=AF_INET' "$T/strace")
		ok "strace is attached: it saw the session workers accept the 3 connections ($accepts)" test "$accepts" -ge 3
		is "$(grep -cv 'restart_syscall\|resumed>\|^---\|+++' "$T/strace.l")" 0 \
		    "the listener made no system call for them (the workers accept on its sockets)"
		sed 's/^/#   /' "$T/strace.l" | head -5
		is "$(grep -c 'execve' "$T/strace")" 0 "no execve in the listener, the session server, its sessions or the other servers for 3 messages"
		grep execve "$T/strace" | head -5 | sed 's/^/#   /'
	else
		skip "strace cannot attach here: $(head -n 1 "$T/strace.err")"
	fi
else
	skip "strace not installed"
fi

# ---- 5. rules edited: picked up without restart ----
# the sender rule goes first (after body-scan; an envelope rule after the
# sample's header rule would be decided after DATA only); the subject
# rule at the end
cp "$T/conf/rules" "$T/rules.orig"
{
	sed -n '1,/^body-scan/p' "$T/rules.orig"
	printf '\nrule "No spammer"\n    sender spammer@bad.test\n    reject 550 5.7.1 "No mail from spammer"\n'
	sed '1,/^body-scan/d' "$T/rules.orig"
	printf '\nrule "No lottery"\n    header Subject "*lottery*"\n    reject 554 5.7.1 "No lottery mail"\n    stage data\n'
} >"$T/rules.new"
cat "$T/rules.new" >"$T/conf/rules"
ok "the edited rules check (ruleproc -t)" ruleproc -t -c "$T/conf"
chmod -R a+rX "$T/conf"
like "$(send spammer@bad.test alice@example.com)" '^5[0-9][0-9] - - \| .*No mail from spammer|^250 5[0-9][0-9] - \| .*No mail from spammer' \
	"new sender rule: 5xx at MAIL or RCPT, without restart"
like "$(send bob@remote.test alice@example.com 'win the lottery now')" '^250 250 554 \| 5\.7\.1 No lottery mail' \
	"new data-stage subject rule: 554 at DATA"
n=$(nmail alice)
like "$(send bob@remote.test alice@example.com 'ordinary')" '^250 250 250 ' "other mail still accepted"
is "$(nmail alice)" $((n + 1)) "... and delivered"
like "$(send bob@remote.test alice@example.com '[SPAM] cheap')" '^250 250 250 ' "[SPAM] mail accepted"
is "$(ls "$T/mail/alice/.Junk/new" 2>/dev/null | wc -l | tr -d ' ')" 1 "the sample rule still applies: [SPAM] filed into alice/.Junk"
ok "no server was restarted for the rules" kill -0 $rc $rp $ch
is "$(nstarted chain)" 1 "chain server started only once so far"

# ---- 6. table rebuilt (mkcdb): picked up without restart ----
like "$(send bob@remote.test newuser@example.com)" '^250 550 - ' "newuser@example.com unknown: 550"
echo 'newuser@example.com     newuser/' >>"$T/conf/mailboxes"
ok "mkcdb rebuilds the tables" mkcdb -c "$T/conf"
chmod -R a+rX "$T/conf"
like "$(send bob@remote.test newuser@example.com)" '^250 250 250 ' "after mkcdb, without restart: newuser accepted"
is "$(nmail newuser)" 1 "... and delivered to newuser/"
is "$(nstarted relaycheck)" 1 "relaycheck server not restarted for the table"

# ---- 6a. a worker keeps nothing of the messages it served ----
python3 - "$port" <<'PY' >"$T/big.out" 2>&1
import smtplib, sys
body = ("x" * 76 + "\r\n") * 850	# 66 KB
for i in range(40):
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.test", timeout=30)
    s.sendmail("bob@remote.test", ["alice@example.com"], "Subject: big %d\r\n\r\n%s" % (i, body))
    s.quit()
print("sent")
PY
is "$(cat "$T/big.out")" sent "40 messages of 66 KB, one after the other"
heap_kib() {	# PID: the size of its [heap] mapping, 0 if none
	k=0
	while read -r range _ _ _ _ what; do
		[ "$what" = "[heap]" ] && k=$(( (0x${range#*-} - 0x${range%-*}) / 1024 ))
	done </proc/$1/maps
	echo $k
}
max=0 all=
for w in $(pgrep -P $ch -x ruleproc) $(pgrep -P "$(delivpid $ch)" -x deliver); do
	h=$(heap_kib $w); all="$all $h"
	[ "$h" -gt "$max" ] && max=$h
done
ok "the largest chain worker heap is under 2 MiB ($max KiB of:$all): a message's buffers are given back, not kept until the worker retires" [ "$max" -lt 2048 ]

# ---- 6b. settings edited in place: reused deliver workers read them again ----
mkdir -p "$T/mail2" && chmod 777 "$T/mail2"
cp "$T/conf/settings" "$T/settings.before"
sed "s|^mailroot .*|mailroot $T/mail2|" "$T/settings.before" >"$T/settings.new"
cat "$T/settings.new" >"$T/conf/settings"	# same file, same directory: only its own stat changes
like "$(send bob@remote.test alice@example.com 'to mail2')" '^250 250 250 ' "settings edited in place: 250"
is "$(ls "$T/mail2/alice/new" 2>/dev/null | wc -l | tr -d ' ')" 1 "... delivered under the new mailroot, without a restart"
cat "$T/settings.before" >"$T/conf/settings"
n=$(nmail alice)
like "$(send bob@remote.test alice@example.com 'back')" '^250 250 250 ' "settings put back: 250"
is "$(nmail alice)" $((n + 1)) "... delivered under the old mailroot again"

# ---- 10. deliver failures through the fork server: 4xx / 5xx, never 250 ----
n=$(nmail alice)
mv "$T/mail/alice/new" "$T/alice-new"
echo "not a directory" >"$T/mail/alice/new"; chmod 666 "$T/mail/alice/new"
out=$(send bob@remote.test alice@example.com 'while broken')
like "$out" '^250 250 4[0-9][0-9] ' "alice's Maildir broken: deliver defers, the reply is 4xx, not 250"
rm -f "$T/mail/alice/new"; mv "$T/alice-new" "$T/mail/alice/new"
is "$(nmail alice)" "$n" "nothing delivered to alice meanwhile"
like "$(send bob@remote.test alice@example.com 'lottery again')" '^250 250 5[0-9][0-9] ' "a permanent failure after DATA (rules reject) is 5xx"
like "$(grep 'chain id=.* exit=' "$T/log" | tail -n 1)" 'exit=100$' "... given by the chain (exit 100)"
like "$(send bob@remote.test alice@example.com 'after repair')" '^250 250 250 ' "Maildir repaired: accepted again"
is "$(nmail alice)" $((n + 1)) "... and delivered"

# ---- 3. the relaycheck server killed ----
kill -KILL $rc
like "$(send bob@remote.test x@elsewhere.test)" '^250 5[0-9][0-9] - ' "relaycheck server killed: a relay attempt is still refused"
n=$(nmail bob)
like "$(send carol@remote.test bob@example.com)" '^250 250 250 ' "relaycheck server killed: a message is still accepted"
is "$(nmail bob)" $((n + 1)) "... and delivered"
ok "the death of the server is logged" waitfor 20 logged "fork server relaycheck (pid $rc) ended"
sleep 1.1
send bob@remote.test x@elsewhere.test >/dev/null
waitfor 20 test "$(nstarted relaycheck)" -ge 2
is "$(nstarted relaycheck)" 2 "after >1 s and a connection: relaycheck started again"
rc2=$(srvpid relaycheck); bg_pid $rc2
ok "the new relaycheck server runs" kill -0 $rc2
# killed right after its restart: not started again within the second
kill -KILL $rc2
like "$(send bob@remote.test x@elsewhere.test)" '^250 5[0-9][0-9] - ' "killed again at once: relay still refused (exec per session)"
like "$(send bob@remote.test carol@example.com)" '^250 250 250 ' "... mail still accepted"
ok "second end logged" waitfor 20 logged "fork server relaycheck (pid $rc2) ended"
started_at=$(nstarted relaycheck)
sleep 1.1
send bob@remote.test x@elsewhere.test >/dev/null
waitfor 20 test "$(nstarted relaycheck)" -gt "$started_at"
is "$(nstarted relaycheck)" 3 "at most once a second: started again after the second passed"
rc=$(srvpid relaycheck); bg_pid $rc
like "$(send bob@remote.test x@elsewhere.test)" '^250 5[0-9][0-9] - ' "the restarted relaycheck server refuses relaying"

# ---- 4. the deliver server (under the chain server) killed ----
dl=$(delivpid $ch)
like "$dl" '^[0-9]+$' "deliver server found under the chain server"
kill -KILL $dl
n=$(nmail alice)
like "$(send bob@remote.test alice@example.com 'deliver killed')" '^250 250 250 ' "deliver server killed: the next message gets 250"
is "$(nmail alice)" $((n + 1)) "... and is delivered"
waitfor 20 test -n "$(delivpid $ch)"
dl2=$(delivpid $ch); bg_pid $dl2
ok "the chain server started a new deliver server (a new pid)" test -n "$dl2" -a "$dl2" != "$dl"
like "$(send bob@remote.test alice@example.com 'after deliver restart')" '^250 250 250 ' "and the one after that too"
is "$(nmail alice)" $((n + 2)) "... delivered"
ok "the chain server itself kept running" kill -0 $ch
is "$(nstarted chain)" 1 "the listener did not restart the chain server"

# ---- 9. SIGTERM: the servers end once the sessions have ended ----
rp=$(srvpid ruleproc) dl=$(delivpid $ch)
n=$(nmail alice)
python3 - "$port" >"$T/slow.out" 2>&1 <<'EOF' &
import smtplib, sys, time
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.test", timeout=30)
s.ehlo("client.test"); s.mail("bob@remote.test"); s.rcpt("alice@example.com")
time.sleep(2)
code, text = s.data("Subject: slow\r\n\r\nafter SIGTERM\r\n")
print(code); s.quit()
EOF
cpid=$!
sleep 0.7
kill -TERM $lpid
waitfor 30 gone $lpid
ok "the listener ends on SIGTERM" gone $lpid
ok "the servers stay while a session is still open" kill -0 $rc $rp $ch
wait $cpid
is "$(cat "$T/slow.out")" 250 "the open session's message is accepted after SIGTERM"
is "$(nmail alice)" $((n + 1)) "... and delivered"
allgone() { gone $rc && gone $rp && gone $ch && gone $dl; }
ok "within 5 s of the session's end no server process remains" waitfor 50 allgone
for p in $rc $rp $ch $dl; do alive $p && echo "#   still running: $(ps -o pid=,args= -p $p)"; done
portfree() { python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port))" 2>/dev/null; }
ok "the port is free again (no session worker holds the listening socket)" waitfor 50 portfree

# ---- 7. a custom chain cannot serve: exec per message ----
# the script notes each run, then execs deliver: it must run per message
cat >"$T/chain.sh" <<EOF
#!/bin/sh
echo "\$MXID" >>"$T/chain.runs"
exec "$BIN/deliver" -c "$T/conf"
EOF
chmod 755 "$T/chain.sh"
: >"$T/chain.runs"; chmod 666 "$T/chain.runs"
cp "$T/conf/settings" "$T/settings.orig"
echo "chain $T/chain.sh" >>"$T/conf/settings"
: >"$T/log"
start_listener
ok "custom chain: relaycheck still a fork server" grep -q 'fork server relaycheck started' "$T/log"
for p in $(srvpid relaycheck) $(srvpid ruleproc) $(srvpid chain); do bg_pid $p; done
n=$(nmail carol)
like "$(send bob@remote.test carol@example.com)" '^250 250 250 ' "custom chain: 250"
like "$(send bob@remote.test carol@example.com)" '^250 250 250 ' "custom chain: 250 again"
is "$(nmail carol)" $((n + 2)) "custom chain: delivered"
# one check: the script is exec'ed per message, as the log says
got="$(grep -c 'does not run as a fork server: exec per message' "$T/log") log line(s), $(grep -c 'fork server chain started' "$T/log") chain server(s), $(wc -l <"$T/chain.runs" | tr -d ' ') script run(s)"
is "$got" "1 log line(s), 0 chain server(s), 2 script run(s)" \
	"custom chain (a shell script): 'does not run as a fork server: exec per message', the script runs once per message"
stop_listener

# ---- 8. fork_servers no: nothing started, all exec'ed ----
cp "$T/settings.orig" "$T/conf/settings"
echo "fork_servers no" >>"$T/conf/settings"
: >"$T/log"
start_listener
nok "fork_servers no: no fork server line" grep -q 'fork server' "$T/log"
nochild() { [ "$(pgrep -P $lpid | wc -l | tr -d ' ')" = 0 ]; }
ok "fork_servers no: the listener has no child while idle" waitfor 50 nochild	# (start_listener's probe session ends first)
n=$(nmail alice)
like "$(send bob@remote.test alice@example.com)" '^250 250 250 ' "fork_servers no: 250"
is "$(nmail alice)" $((n + 1)) "fork_servers no: delivered"
like "$(send bob@remote.test x@elsewhere.test)" '^250 5[0-9][0-9] - ' "fork_servers no: relay refused"
stop_listener

# ---- 11. session workers are reused: nothing of a session reaches the next ----
# An authenticated session may relay; the next sessions, served by the
# same reused worker processes, must not (never an open relay).
cp "$T/settings.orig" "$T/conf/settings"
echo "auth_loopback_plaintext yes" >>"$T/conf/settings"
echo 'reuse secret' | mkauth -c "$T/conf" -s reuser >/dev/null
chmod 644 "$T/conf/auth.cdb"	# the sessions run as nobody
: >"$T/log"
start_listener
for p in $(srvpid relaycheck) $(srvpid ruleproc) $(srvpid chain) $(srvpid sessions); do bg_pid $p; done
out=$(python3 - "$port" <<'PY'
import smtplib, sys
port = int(sys.argv[1])
res = []
for i in range(6):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
    s.ehlo("client.test")
    if i % 2 == 0:
        s.login("reuser", "reuse secret")
    s.mail("bob@remote.test")
    code, _ = s.rcpt("x@elsewhere.test")
    res.append("%s%d" % ("auth" if i % 2 == 0 else "anon", code))
    s.rset(); s.quit()
print(" ".join(res))
PY
)
is "$out" "auth250 anon554 auth250 anon554 auth250 anon554" \
	"reused session workers: AUTH relays, the next (unauthenticated) session never does"
like "$(grep -c 'disconnect ip=.* quit ' "$T/log")" '^6$' "six sessions served (and ended with QUIT)"
ss=$(srvpid sessions)
like "$(pgrep -P $ss -x smtpd-lite | wc -l | tr -d ' ')" '^[1-3]$' "... by at most 3 reused session workers (not one process each)"

# ---- 12. the session server dies: the listener accepts meanwhile ----
oldworkers=$(pgrep -P $ss -x smtpd-lite | tr '\n' ' ')
kill -KILL $ss
waitfor 30 logged "fork server sessions (pid $ss) ended"
ok "the session server's end is logged by the listener" logged "fork server sessions (pid $ss) ended"
like "$(send bob@remote.test alice@example.com)" '^250 250 250 \| 2\.0\.0 Ok ' "a message right after: 250"
waitfor 30 test "$(nstarted sessions)" -ge 2
is "$(nstarted sessions)" 2 "after a second the session server is started again"
ss2=$(srvpid sessions); bg_pid $ss2
like "$(send bob@remote.test alice@example.com)" '^250 250 250 \| 2\.0\.0 Ok ' "and its workers take the sessions again: 250"
like "$(send bob@remote.test x@elsewhere.test)" '^250 5[0-9][0-9] - ' "relay still refused"
allgone2() { for p in $oldworkers; do alive $p && return 1; done; return 0; }
ok "the killed server's idle workers are gone ($oldworkers)" waitfor 30 allgone2
stop_listener
