# ruleproc -t and the last good rules: a broken edit never turns the
# filter off and never rejects everything.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
cat >"$T/next" <<EOF
#!/bin/sh
cat >"$T/msg.out"
EOF
chmod +x "$T/next"
printf 'Subject: hi\n\nhello\n' >"$T/msg"
chain() { rm -f "$T/msg.out"; env SENDER="$1" RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/next" <"$T/msg" >/dev/null 2>"$T/err"; }
rm -f "$C/rules" "$C/rules.ok"

chain a@example.net; is "$?" 0 "no rules file: mail passes"
ok "no rules file: next program ran" test -f "$T/msg.out"

cat >"$C/rules" <<'EOF'
rule "Block spammer"
    sender *@spammer.example
    reject 550 5.7.1 "Go away"
EOF
is "$(ruleproc -t -c "$C" 2>&1 | head -n 1)" "$C/rules: 1 rule OK (0 connect, 0 helo, 1 mail, 0 rcpt, 0 data stage)" "-t reports the rules"
ok "-t installs rules.ok" cmp "$C/rules" "$C/rules.ok"
ls "$C" | grep -q 'rules.ok.tmp' && echo "not ok - temp file left" || echo "ok - no temp file left"

# a broken edit
cp "$C/rules" "$T/good"
cat >>"$C/rules" <<'EOF'
rule "Typo"
    sendr *@other.example
    reject
EOF
ruleproc -t -c "$C" >/dev/null 2>"$T/err"; is "$?" 100 "-t on a broken file exits 100"
is "$(cat "$T/err")" "$C/rules:5: unknown keyword \"sendr\"" "-t names file:line: reason"
ok "-t leaves rules.ok alone" cmp "$T/good" "$C/rules.ok"

chain x@spammer.example; is "$?" 100 "broken rules: the last good rules still reject"
like "$(cat "$T/err")" "rules:5: unknown keyword" "broken rules: the error is logged"
like "$(cat "$T/err")" "using the last good rules from $C/rules.ok" "broken rules: fallback is logged"
chain a@example.net; is "$?" 0 "broken rules: other mail still delivered"
ok "broken rules: next program ran" test -f "$T/msg.out"

# dry run says so too
like "$(ruleproc -n -c "$C" -f x@spammer.example -r alice@example.com <"$T/msg")" "BROKEN: .*rules:5: unknown keyword" "dry run shows the broken file"

# broken and no last good copy: tempfail, never accept unfiltered, never reject
rm -f "$C/rules.ok"
chain a@example.net; is "$?" 111 "no usable rules: chain tempfails"
is "$(tail -n 1 "$T/err")" "4.3.0 ruleproc: rules configuration error, try again later" "no usable rules: 4.3.0 reason"
nok "no usable rules: next program not run" test -f "$T/msg.out"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@b.c\nrecipient=alice@example.com\n\n' | ruleproc -p -c "$C" 2>/dev/null); r=$?
is "$r:$out" "111:" "no usable rules: policy service exits 111 without answering"
ruleproc -n -c "$C" -r alice@example.com <"$T/msg" >/dev/null 2>&1; is "$?" 111 "no usable rules: dry run 111"

# fixing the file works at once; a good file also refreshes rules.ok
cp "$T/good" "$C/rules"
echo "# an edit not installed with -t" >>"$C/rules"
chain x@spammer.example; is "$?" 100 "fixed rules in force"
ok "running with good rules refreshes rules.ok" cmp "$C/rules" "$C/rules.ok"

# a read-only conf directory is fine (run as nobody when we are root)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	echo "# another" >>"$C/rules"
	chmod 644 "$C"/*; chmod 755 "$C"
	rm -f "$T/msg.out"; touch "$T/msg.out"; chmod 666 "$T/msg.out"
	setpriv --reuid=nobody --regid=nogroup --clear-groups env SENDER=x@spammer.example RECIPIENTS=alice@example.com \
	    "$BIN/ruleproc" -c "$C" "$T/next" <"$T/msg" >/dev/null 2>"$T/err"
	is "$?" 100 "read-only conf: rules still apply"
	nok "read-only conf: no warning about rules.ok" grep -q "cannot update" "$T/err"
else
	skip "read-only conf check needs root and setpriv"
fi

# -R checks another file without touching rules.ok
cp "$C/rules.ok" "$T/ok.before"
printf 'rule x\n  bogus\n' >"$T/other"
ruleproc -t -R "$T/other" -c "$C" >/dev/null 2>"$T/err"; is "$?" 100 "-t -R on a broken file: 100"
is "$(cat "$T/err")" "$T/other:2: unknown keyword \"bogus\"" "-t -R error names that file"
ok "-t -R leaves rules.ok alone" cmp "$T/ok.before" "$C/rules.ok"
printf 'rule x\n  accept\n' >"$T/other"
ok "-t -R good file" ruleproc -t -R "$T/other" -c "$C"
ok "-t -R does not install" cmp "$T/ok.before" "$C/rules.ok"

# the sample conf/rules is valid
ok "sample conf/rules is valid" ruleproc -t -R "$TOP/conf/rules"

# -t points out envelope rules that a data-stage rule in front postpones
printf 'rule "Junk"\n    header Subject *spam*\n    folder Junk\nrule "Old"\n    recipient *@old.example\n    reject\n' >"$T/order"
ruleproc -t -R "$T/order" >/dev/null 2>"$T/err"; is "$?" 0 "-t: a note is not an error"
is "$(cat "$T/err")" "$T/order:4: note: rule \"Old\" (rcpt stage) can reject only after DATA: rule \"Junk\" (line 1, data stage) comes first and may stop processing" "-t notes a postponed envelope rule"
printf 'rule "Old"\n    recipient *@old.example\n    reject\nrule "Junk"\n    header Subject *spam*\n    folder Junk\n' >"$T/order"
is "$(ruleproc -t -R "$T/order" 2>&1 >/dev/null)" "" "-t: no note when envelope rules come first"
# the sample's commented examples, all switched on, are valid and in a good order
sed -n '/^body-scan/,$p' "$TOP/conf/rules" | sed 's/^# \(rule \|    \)/\1/' | grep -v '^#' >"$T/allrules"
ruleproc -t -R "$T/allrules" >"$T/out" 2>"$T/err"; is "$?" 0 "sample conf/rules with every example switched on is valid"
is "$(cat "$T/err")" "" "... and no envelope rule is postponed"
like "$(cat "$T/out")" "11 rules OK" "... all 11 rules"
