# ruleproc -n: the dry run explains every rule, the dialogue answers and
# the final decision; its exit status is the chain filter's.
. "$TOP/t/lib.sh"
cat >"$T/rules" <<'EOF'
rule "Forged local sender"
    sender *@example.com
    not client 127.0.0.0/8
    not authenticated
    reject 550 5.7.1 "Use our server"
rule "Mark"
    add-header X-Rules checked
    continue
rule "Dave has left"
    recipient dave@example.com
    redirect bob@example.com
rule "Lists"
    match any
    header List-Id *
    header Precedence list bulk
    folder Lists
rule "Spam"
    body /cheap +pills/
    tag-subject [SPAM]
    folder Junk
rule "Night"
    time 23:00-05:00
    tempfail
EOF
printf 'From: x@example.net\nSubject: =?UTF-8?Q?hello_w=C3=B6rld?=\nPrecedence: bulk\n\ncheap   pills\n' >"$T/m1"
dry() { ruleproc -n -R "$T/rules" -w "mon 10:00" "$@"; }
o=$(dry -f x@example.net -r dave@example.com -r alice@example.com -i 192.0.2.5 -H mx.example.net <"$T/m1"); rc=$?
is "$rc" 0 "deliver: exit 0"
like "$o" '^rules: +.*/rules \(6 rules\)$' "names the rules file and count"
like "$o" '^envelope: +sender <x@example.net>, 2 recipients: <dave@example.com>, <alice@example.com>$' "envelope line"
like "$o" '^session: +client 192.0.2.5, helo "mx.example.net", not authenticated, local time Mon 10:00$' "session line"
like "$o" '^message: +[0-9]+ bytes, 3 header fields, body 14 bytes scanned$' "message line"
like "$o" '^rule 1 "Forged local sender" \(line 1, mail stage, match all\)$' "rule heading with line and stage"
like "$o" '^    no   sender \*@example.com  <- sender "x@example.net"$' "failed condition with the value seen"
like "$o" 'yes  not client 127.0.0.0/8  <- client 192.0.2.5  \(not needed: already decided\)' "conditions after the decision still explained"
like "$o" '^    => no match$' "no match stated"
like "$o" '^    => MATCH for dave@example.com, alice@example.com: add-header X-Rules checked; continue$' "match with its actions and continue"
like "$o" '^      yes  recipient dave@example.com  <- recipient "dave@example.com" \(matches dave@example.com\)$' "per-recipient evaluation"
like "$o" '^    => MATCH for dave@example.com: redirect bob@example.com; stop$' "rule matched for one recipient only"
like "$o" 'yes  header Precedence list bulk  <- Precedence: "bulk" \(matches bulk\)' "header value and the pattern that matched"
like "$o" 'no   header List-Id \*  <- no List-Id field' "absent header stated"
like "$o" '^rule 5 "Spam" .*
    not reached: processing has stopped for every recipient' "rules after everyone stopped: not reached"
like "$o" 'MAIL FROM: DUNNO \(rule 3 "Dave has left" needs the rcpt stage' "dialogue: MAIL answer explained"
like "$o" 'RCPT TO:<alice@example.com>: DUNNO \(rule 4 "Lists" needs the data stage' "dialogue: RCPT answer explained"
like "$o" '^decision: +deliver$' "decision"
is "$(echo "$o" | sed -n '/^RECIPIENTS:/,/^FOLDERS:/p' | tr -s ' \n' ' ')" "RECIPIENTS: bob@example.com alice@example.com FOLDERS: " "resulting recipients"
like "$o" 'alice@example.com -> folder Lists' "resulting folders"
like "$o" '^add header: X-Rules: checked$' "resulting header"
like "$o" '^exit: +0$' "exit shown"

# reject: exit 100 and the reply
o=$(dry -f alice@example.com -r bob@example.com -i 198.51.100.1 <"$T/m1"); rc=$?
is "$rc" 100 "reject: exit 100"
like "$o" '^decision: +reject 550 5.7.1 Use our server  \(rule 1 "Forged local sender", line 1\)$' "reject decision names rule and line"
like "$o" 'MAIL FROM: 550 5.7.1 Use our server  \(rule 1 "Forged local sender"\)' "dialogue: rejected at MAIL already"
o=$(dry -f alice@example.com -r bob@example.com -i 198.51.100.1 -a alice <"$T/m1"); like "$o" 'no   not authenticated  <- authenticated as "alice"' "-a: authenticated"
like "$o" 'authenticated as "alice", local time' "-a shown in the session"
is "$(echo "$o" | sed -n 's/^decision: *//p')" "deliver" "-a: authenticated sender passes"
# tempfail: exit 111, time from -w
ruleproc -n -q -R "$T/rules" -w "tue 23:30" -f a@b.example -r carol@example.com </dev/null >"$T/o"; is "$?" 111 "tempfail: exit 111"
like "$(cat "$T/o")" '^decision: +tempfail 451 4.7.1 Message deferred by rule "Night"' "default tempfail text names the rule"
# envelope from the environment, as in the chain
o=$(SENDER=env@example.net RECIPIENTS=dave@example.com TCPREMOTEIP=192.0.2.9 HELO=h.example ruleproc -n -R "$T/rules" -w "mon 10:00" </dev/null)
like "$o" 'envelope: +sender <env@example.net>, 1 recipient: <dave@example.com>' "envelope from the environment"
like "$o" 'client 192.0.2.9, helo "h.example"' "session from the environment"
# -q: only the decision
o=$(dry -q -f x@example.net -r alice@example.com <"$T/m1")
is "$(echo "$o" | head -n 1)" "decision:  deliver" "-q: starts with the decision"
nok "-q: no trace" sh -c "echo '$o' | grep -q '^rule '"
# the subject tag is shown with the old value
printf 'Subject: buy now\n\ncheap pills here\n' >"$T/m2"
like "$(dry -f x@example.net -r carol@example.com <"$T/m2")" 'subject: +"\[SPAM\] buy now" \(was "buy now"\)' "tagged subject shown"
# client bytes are escaped in the output
o=$(dry -f 'x@example.net' -H "$(printf 'evil\033[31mhelo')" -r carol@example.com </dev/null)
like "$o" 'helo "evil\\x1b\[31mhelo"' "control characters escaped"
# no rules file: nothing to do
newconf; rm -f "$T/conf/rules"
like "$(ruleproc -n -c "$T/conf" -r a@example.com </dev/null)" "no rules file: nothing to do" "no rules file stated"
# usage errors
nok "envelope options only with -n" ruleproc -f x@example.net true
nok "bad -w" ruleproc -n -w "someday" </dev/null
