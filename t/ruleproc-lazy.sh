# The start-up fast path: CONFDIR/rules byte for byte equal to rules.ok
# (the last good copy, installed only after a full check) is parsed
# without compiling its regular expressions; each is compiled when first
# needed. It must decide exactly as the full check does, a bad edit must
# still be caught (file:line: reason, rules.ok stays in force), and a
# rules.ok that is not the rules file never lets anything skip the check.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
rm -f "$C/rules" "$C/rules.ok"
cat >"$T/next" <<EOF
#!/bin/sh
cat >"$T/msg.out"
EOF
chmod +x "$T/next"

# ---- the bench's 500 rules: lazy and full parse explain every rule alike ----
sh "$TOP/bench/ruleproc.sh" rules >"$C/rules"
ruleproc -t -c "$C" >/dev/null 2>&1; ok "bench rules installed as rules.ok" cmp "$C/rules" "$C/rules.ok"
ruleproc -n -q -v -c "$C" -r a@example.com </dev/null >/dev/null 2>"$T/err"
like "$(cat "$T/err")" "rules: same as rules.ok .*compiled when first needed" "rules = rules.ok: the lazy path is taken"
ruleproc -n -q -v -R "$C/rules" -r a@example.com </dev/null >/dev/null 2>"$T/err"
like "$(cat "$T/err")" "rules: checked in full" "-R: always the full check"

mk() { printf '%b' "$1" >"$T/m$2"; }
mk 'From: a@example.net\nSubject: plain\n\nnothing to see\n' 1
mk 'From: a@example.net\nSubject: a Special Offer 13 today\nList-Id: <promo14.example>\n\nhello\n' 2
mk 'Subject: x\n\nplease enter unsubscribe code 15 here\n' 3
mk 'Subject: x\n\nyou are the JACKPOT-16    Winner of the week\n' 4
mk 'Subject: x\n\nlottery-496 winner\n' 5
mk 'Subject: x\n\nlottery-497 winner\n' 6
mk 'Subject: x\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream; name="x.SCR17"\nContent-Transfer-Encoding: base64\n\nTVqQ\n--b--\n' 7
mk 'Subject: x\nX-Mailer: MassMailer 24 pro\n\nquoted-printable=\n text\n' 8
n=0 diff=0
for m in 1 2 3 4 5 6 7 8; do
	for env in "-f s@example.net -r alice@example.com" "-f x@spam10.example -r bob@example.com" \
	    "-f s@example.net -r user11@example.org -r alice@example.com" "-f s@example.net -r a@example.com -i 198.51.12.7" \
	    "-f s@example.net -r a@example.com -H a.dialup18.example" "-f s@example.net -r a@example.com -H a.dialup18.example -a joe" \
	    "-f s@news19.example -r a@example.com -i 2001:db8:15::1"; do
		# shellcheck disable=SC2086
		ruleproc -n -w "mon 10:00" -R "$C/rules" $env <"$T/m$m" >"$T/full" 2>&1; r1=$?
		# shellcheck disable=SC2086
		ruleproc -n -w "mon 10:00" -c "$C" $env <"$T/m$m" >"$T/lazy" 2>&1; r2=$?
		n=$((n + 1))
		if [ "$r1" != "$r2" ] || ! cmp -s "$T/full" "$T/lazy"; then
			diff=$((diff + 1))
			[ $diff -le 2 ] && { echo "# message $m, $env: exit $r1 vs $r2"; diff "$T/full" "$T/lazy" | head -n 10 | sed 's/^/#   /'; }
		fi
		cat "$T/lazy" >>"$T/all-lazy"
	done
done
is "$diff" 0 "bench rules: full trace, decision and exit code alike for $n messages x envelopes"
# the cases above reach the interesting rules (the comparison means something)
for want in 'decision:  reject 550 5.7.1 No mail from you  \(rule 11 "r10"' 'decision:  reject 550 5.7.1 Scam  \(rule 17 "r16"' \
    'decision:  reject 550 5.7.1 Scam  \(rule 497 "r496"' 'decision:  reject 550 5.7.1 Message rejected by rule "r17"' \
    'decision:  tempfail 451 4.7.1 Message deferred by rule "r18"' 'archive11@example.org' '-> folder Promo' '-> folder Junk' \
    'subject:   "\[OFFER\] a Special Offer 13' 'decision:  reject 550 5.7.1 Message rejected by rule "r12"'; do
	like "$(cat "$T/all-lazy")" "$want" "lazy: seen $(echo "$want" | cut -c1-60)"
done

# ---- the rules(5) examples, all together ----
awk '/^\.EX/{getline; if ($0 ~ /^rule "/) {f=1; print; next}} /^\.EE/{f=0} f' "$TOP/doc/rules.5" |
	sed -e 's/\\e/\\/g' -e 's/\\-/-/g' >"$C/rules"
ruleproc -t -c "$C" >/dev/null 2>&1; ok "rules(5) examples installed as rules.ok" cmp "$C/rules" "$C/rules.ok"
mk 'Subject: invoice\nContent-Type: multipart/mixed; boundary="xx"\n\n--xx\nContent-Type: text/plain\n\nPlease see the attachment.\n--xx\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="invoice.pdf.EXE"\nContent-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--xx--\n' 1
mk 'List-Id: Debian users <debian-user.lists.debian.org>\nSubject: x\n\nx\n' 2
mk 'Precedence: bulk\nSubject: cheap meds\n\nx\n' 3
mk 'From: "PayPal" <service@paypa1-secure.example>\nSubject: Your account\n\nverify your password now\n' 4
mk 'Subject: hi\n\nhello\n' 5
n=0 diff=0
for m in 1 2 3 4 5; do
	for env in "-f a@example.net -r alice@example.com" "-f a@example.net -r dave@example.com -r alice@example.com" \
	    "-f a@example.net -r sales@example.com -w wed 23:15" "-f a@example.net -r qa@test.example.org -w wed 23:15" \
	    "-f alice@example.com -r bob@example.com -i 192.0.2.9" "-f alice@example.com -r bob@example.com -i 127.0.0.1 -a alice" \
	    "-f a@example.net -r alice@example.com -H localhost -i 203.0.113.9"; do
		case $env in *-w*) w= ;; *) w="-w mon 10:00" ;; esac
		# shellcheck disable=SC2086
		ruleproc -n $w -R "$C/rules" $env <"$T/m$m" >"$T/full" 2>&1; r1=$?
		# shellcheck disable=SC2086
		ruleproc -n $w -c "$C" $env <"$T/m$m" >"$T/lazy" 2>&1; r2=$?
		n=$((n + 1))
		if [ "$r1" != "$r2" ] || ! cmp -s "$T/full" "$T/lazy"; then
			diff=$((diff + 1))
			[ $diff -le 2 ] && { echo "# message $m, $env: exit $r1 vs $r2"; diff "$T/full" "$T/lazy" | head -n 10 | sed 's/^/#   /'; }
		fi
	done
done
is "$diff" 0 "rules(5) examples: full trace, decision and exit code alike for $n messages x envelopes"

# ---- a bad regex in rules, a good rules.ok: the full check catches it ----
cat >"$C/rules" <<'EOF'
rule "Block spammer"
    sender *@spammer.example
    reject 550 5.7.1 "Go away"
EOF
ruleproc -t -c "$C" >/dev/null 2>&1
cp "$C/rules.ok" "$T/good"
cat >>"$C/rules" <<'EOF'
rule "Typo"
    header Subject /(unclosed/
    reject
EOF
printf 'Subject: (unclosed\n\nhello\n' >"$T/msg"
chain() { rm -f "$T/msg.out"; env SENDER="$1" RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/next" <"$T/msg" >/dev/null 2>"$T/err"; }
chain x@spammer.example; is "$?" 100 "bad regex in rules: the last good rules still reject"
like "$(cat "$T/err")" "rules:5: bad regular expression /\(unclosed/" "bad regex in rules: file:line: reason logged"
like "$(cat "$T/err")" "using the last good rules from $C/rules.ok" "bad regex in rules: rules.ok in force"
chain a@example.net; is "$?" 0 "bad regex in rules: other mail delivered (not rejected, not tempfailed)"
ok "bad regex in rules: rules.ok untouched" cmp "$T/good" "$C/rules.ok"
ruleproc -t -c "$C" >/dev/null 2>"$T/err"; is "$?" 100 "-t still refuses it"
is "$(cat "$T/err")" "$C/rules:5: bad regular expression /(unclosed/: Unmatched ( or \\(" "-t: file:line: reason"

# ---- rules.ok that is not rules: always the full check ----
cp "$T/good" "$C/rules"
printf 'rule "Everything"\n    reject\n' >"$C/rules.ok"	# tampered: differs from rules
chain a@example.net; is "$?" 0 "rules.ok differing from a good rules: rules decides, not rules.ok"
ok "... and rules.ok is refreshed from the checked rules" cmp "$C/rules" "$C/rules.ok"
printf 'rule "Bad"\n    sender /a[b/\n    reject\n' >"$C/rules.ok"
ruleproc -n -q -v -c "$C" -f a@example.net -r alice@example.com </dev/null >"$T/out" 2>"$T/err"
like "$(cat "$T/err")" "rules: checked in full" "rules.ok differing (bad regex): full check"
like "$(cat "$T/out")" "^decision:  deliver" "... rules decides"
ok "... rules.ok refreshed" cmp "$C/rules" "$C/rules.ok"
# a bad rules plus a differing bad rules.ok: nothing usable, tempfail
printf 'rule "Bad"\n    header Subject /x(/\n    reject\n' >"$C/rules"
printf 'rule "Bad too"\n    header Subject /y[/\n    reject\n' >"$C/rules.ok"
chain a@example.net; is "$?" 111 "both broken and different: tempfail"
is "$(tail -n 1 "$T/err")" "4.3.0 ruleproc: rules configuration error, try again later" "... 4.3.0"

# ---- the same bad regex copied by hand into rules and rules.ok ----
# (rules.ok is only written by ruleproc after a full check, so this
# "cannot happen"; if it does, the regex fails when first needed and
# that decision is a temporary failure: never accept, never reject)
cat >"$C/rules" <<'EOF'
rule "Block spammer"
    sender *@spammer.example
    reject 550 5.7.1 "Go away"
rule "Broken sender"
    sender /[unclosed/
    reject
rule "Broken header"
    header Subject /(unclosed/
    folder Junk
EOF
cp "$C/rules" "$C/rules.ok"
chain x@spammer.example; is "$?" 100 "hand-copied bad regex: a rule before it still rejects"
chain a@example.net; is "$?" 111 "hand-copied bad regex reached: temporary failure"
nok "... next program not run" test -f "$T/msg.out"
is "$(tail -n 1 "$T/err")" "4.3.0 rules configuration error, try again later" "... 4.3.0 reply"
like "$(cat "$T/err")" "rules:5: bad regular expression /\[unclosed/: .*temporary failure until it is fixed" "... logged with file:line: reason"
o=$(ruleproc -n -c "$C" -f a@example.net -r alice@example.com <"$T/msg" 2>/dev/null); r=$?
is "$r" 111 "dry run: exit 111"
like "$o" "ERROR $C/rules:5: bad regular expression" "dry run: the trace says why"
like "$o" "^decision:  tempfail 451 4.3.0 rules configuration error" "dry run: tempfail decision"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=MAIL\nclient_address=192.0.2.1\nsender=a@b.example\n\n' | ruleproc -p -c "$C" 2>/dev/null)
is "$out" "action=451 4.3.0 rules configuration error, try again later" "policy service: tempfail, not DUNNO"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=MAIL\nclient_address=192.0.2.1\nsender=x@spammer.example\n\n' | ruleproc -p -c "$C" 2>/dev/null)
is "$out" "action=550 5.7.1 Go away" "policy service: a rule before it still answers"
# the milter is long-lived and checks in full even when rules = rules.ok
timeout 10 ruleproc -m "unix:$T/milter.sock" -c "$C" >/dev/null 2>"$T/err"; r=$?
is "$r" 111 "milter: full check at start refuses the hand-copied bad regex"
like "$(cat "$T/err")" "rules:5: bad regular expression" "milter: ... with file:line: reason"
