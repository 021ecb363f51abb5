# ruleproc -p: Postfix's policy delegation protocol, envelope-stage
# rules only; many requests per process.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
cat >"$C/rules" <<'EOF'
rule "Bad client"
    client 203.0.113.0/24
    reject 554 5.7.1 "Your network is blocked"
rule "Forged local sender"
    sender *@example.com
    not client 127.0.0.0/8 ::1
    not authenticated
    reject 550 5.7.1 "Local sender from outside"
rule "Old domain"
    recipient *@old.example.net
    reject 550 5.1.1 "This domain no longer receives mail"
rule "Greylist-ish"
    helo localhost
    tempfail 450 4.7.1 "Say who you are"
rule "Tag"
    header Subject *spam*
    folder Junk
rule "After a data rule"
    recipient never@example.com
    reject 550 5.1.1 "Never"
EOF
req() { # state client helo sender rcpt [extra]
	printf 'request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\nhelo_name=%s\nsender=%s\nrecipient=%s\nqueue_id=\ninstance=1.2\nfuture_attribute=ignored\n%s\n' "$@"
}
out=$( {
	req CONNECT 203.0.113.5 '' '' '' ''
	req CONNECT 192.0.2.1 '' '' '' ''
	req MAIL 192.0.2.1 mx.example.net alice@example.com '' ''
	req MAIL 127.0.0.1 mx.example.net alice@example.com '' ''
	req MAIL 192.0.2.1 mx.example.net alice@example.com '' 'sasl_username=alice
'
	req RCPT 192.0.2.1 mx.example.net bob@example.net x@old.example.net ''
	req RCPT 192.0.2.1 mx.example.net bob@example.net alice@example.com ''
	req HELO 192.0.2.1 localhost '' '' ''
	req RCPT 192.0.2.1 localhost bob@example.net alice@example.com ''
	req RCPT 192.0.2.1 mx.example.net bob@example.net never@example.com ''
	req DATA 192.0.2.1 mx.example.net bob@example.net '' ''
	req RCPT 2001:db8::1 mx.example.net '' X@OLD.Example.NET ''
} | ruleproc -p -c "$C" 2>"$T/err")
is "$(echo "$out" | grep -c '^action=')" 12 "one answer per request"
n=0
for want in "action=554 5.7.1 Your network is blocked" "action=DUNNO" "action=550 5.7.1 Local sender from outside" \
    "action=DUNNO" "action=DUNNO" "action=550 5.1.1 This domain no longer receives mail" "action=DUNNO" \
    "action=DUNNO" "action=450 4.7.1 Say who you are" "action=DUNNO" "action=DUNNO" "action=550 5.1.1 This domain no longer receives mail"; do
	n=$((n + 1))
	got=$(echo "$out" | grep '^action=' | sed -n "${n}p")
	case $n in
	1) w="client rejected at CONNECT" ;; 2) w="other client: DUNNO" ;; 3) w="forged local sender at MAIL" ;;
	4) w="local client may use the local domain" ;; 5) w="authenticated client may" ;; 6) w="old domain at RCPT" ;;
	7) w="good recipient DUNNO" ;; 8) w="HELO rule after a MAIL-stage rule: not decided at HELO" ;;
	9) w="... decided at RCPT: 450" ;;
	10) w="rule after a data-stage rule is not decided early" ;; 11) w="DATA state: DUNNO (the chain decides)" ;;
	12) w="IPv6 client, case-insensitive recipient" ;;
	esac
	is "$got" "$want" "$w"
done
like "$(cat "$T/err")" 'RCPT reject client=192.0.2.1 sender=<bob@example.net> rcpt=<x@old.example.net> rule="Old domain" line=9' "decision logged with rule and line"

# mx_stages (smtpd-lite's query at CONNECT): the stages where some rule
# can still reject or tempfail; none asked, none said
out=$(req CONNECT 192.0.2.1 '' '' '' 'mx_stages=query
' | ruleproc -p -c "$C" 2>/dev/null)
is "$(echo "$out" | tr '\n' '|')" "action=DUNNO|mx_stages=connect,helo,mail,rcpt|" "mx_stages=query: every stage (a client rule comes first)"
is "$(req CONNECT 192.0.2.1 '' '' '' '' | ruleproc -p -c "$C" 2>/dev/null | grep -c mx_stages)" 0 "no query, no mx_stages"
stages_for() {	# RULES -> the mx_stages line
	printf '%b' "$1" >"$T/r2"
	mkdir -p "$T/c2" && cp -r "$C"/. "$T/c2/" && cp "$T/r2" "$T/c2/rules" && rm -f "$T/c2/rules.ok"
	req CONNECT 192.0.2.1 '' '' '' 'mx_stages=query
' | ruleproc -p -c "$T/c2" 2>/dev/null | grep mx_stages
}
is "$(stages_for 'rule "a"\n    recipient *@old.example\n    reject 550 5.1.1 "gone"\n')" "mx_stages=rcpt" "a recipient reject: rcpt only"
is "$(stages_for 'rule "a"\n    sender *@x.example\n    discard\nrule "b"\n    helo localhost\n    tempfail 450 4.7.1 "who"\n')" \
    "mx_stages=mail,rcpt" "a discard rule cannot answer, but a HELO tempfail after a MAIL rule waits for MAIL"
is "$(stages_for 'rule "a"\n    body *x*\n    reject 550 5.7.1 "x"\nrule "b"\n    client 10.0.0.0/8\n    reject 554 5.7.1 "no"\n')" \
    "mx_stages=none" "a DATA rule first: none (no later rule decides before DATA)"
is "$(stages_for 'rule "a"\n    body *x*\n    add-header X-A "1"\n    continue\nrule "b"\n    sender *@y.example\n    reject 550 5.7.1 "no"\n')" \
    "mx_stages=mail,rcpt" "... unless it continues"

# malformed request: no answer, exit
out=$(printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nthis line has no equals sign\n\n' | ruleproc -p -c "$C" 2>"$T/err"); r=$?
is "$out" "" "malformed request: no answer"
like "$(cat "$T/err")" "malformed policy request" "malformed request logged"
is "$r" 100 "malformed request: exit 100"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=RCPT' | ruleproc -p -c "$C" 2>/dev/null)
is "$out" "" "EOF inside a request: no answer"
out=$(printf '' | ruleproc -p -c "$C" 2>/dev/null); is "$?" 0 "clean EOF: exit 0"

# the rules are re-read when the file changes, between requests
python3 - "$BIN/ruleproc" "$C" >"$T/py.out" 2>&1 <<'EOF'
import subprocess, sys, time, os
p = subprocess.Popen([sys.argv[1], "-p", "-c", sys.argv[2]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
def ask(rcpt):
    p.stdin.write("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nsender=a@b.example\nrecipient=%s\n\n" % rcpt)
    p.stdin.flush()
    a = p.stdout.readline().strip(); p.stdout.readline()
    return a
print(ask("new@example.org"))
rules = os.path.join(sys.argv[2], "rules")
with open(rules, "a") as f:
    f.write('rule "New"\n    recipient new@example.org\n    reject 550 5.1.1 "Gone"\n')
print(ask("new@example.org"))
with open(rules, "a") as f:
    f.write('rule "Broken"\n    frobnicate\n')
print(ask("new@example.org"))
p.stdin.close(); p.wait()
EOF
is "$(cat "$T/py.out" | tr '\n' '|')" "action=DUNNO|action=DUNNO|action=DUNNO|" "appended rule after a data-stage stopping rule stays undecided"
# the same with the new rule first
cat >"$C/rules" <<'EOF'
rule "Old domain"
    recipient *@old.example.net
    reject 550 5.1.1 "Gone"
EOF
ruleproc -t -c "$C" >/dev/null
python3 - "$BIN/ruleproc" "$C" >"$T/py.out" 2>&1 <<'EOF'
import subprocess, sys, os
p = subprocess.Popen([sys.argv[1], "-p", "-c", sys.argv[2]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
def ask(rcpt):
    p.stdin.write("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nsender=a@b.example\nrecipient=%s\n\n" % rcpt)
    p.stdin.flush()
    a = p.stdout.readline().strip(); p.stdout.readline()
    return a
rules = os.path.join(sys.argv[2], "rules")
print(ask("new@example.org"))
with open(rules, "w") as f:
    f.write('rule "New"\n    recipient new@example.org\n    reject 550 5.1.1 "Gone too"\n')
print(ask("new@example.org"))
with open(rules, "a") as f:
    f.write('rule "Broken"\n    frobnicate\n')
print(ask("new@example.org"))
print(ask("x@old.example.net"))
p.stdin.close(); p.wait()
EOF
is "$(cat "$T/py.out" | tr '\n' '|')" "action=DUNNO|action=550 5.1.1 Gone too|action=550 5.1.1 Gone too|action=DUNNO|" "edits apply at once; a broken edit keeps the last good rules"
