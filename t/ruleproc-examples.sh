# The EXAMPLES of doc/rules.5, taken from the page itself, each checked
# with ruleproc -t and against messages in a dry run.
. "$TOP/t/lib.sh"
DOC=$TOP/doc/rules.5
ex() { # NAME: the example rule block of that name, roff escapes undone
	awk -v name="rule \"$1\"" '/^\.EX/{f=1; n=0; next} /^\.EE/{f=0} f{ if (n==0 && $0!=name) f=0; else { print; n++ } }' "$DOC" |
		sed -e 's/\\e/\\/g' -e 's/\\-/-/g' >"$T/ex"
	[ -s "$T/ex" ] || echo "not ok - example \"$1\" not found in rules.5"
}
msg() { printf '%b' "$1" >"$T/msg"; }
dec() { # ARGS...: the decision line of a quiet dry run of $T/ex on $T/msg
	ruleproc -n -q -R "$T/ex" "$@" <"$T/msg" 2>&1 | sed -n 's/^decision: *//p'
}
out() { ruleproc -n -q -R "$T/ex" "$@" <"$T/msg" 2>&1; }

n=$(awk '/^\.EX/{getline; if ($0 ~ /^rule "/) n++} END{print n}' "$DOC")
[ "$n" -ge 12 ] && echo "ok - rules.5 has $n rule examples" || echo "not ok - rules.5 has only $n rule examples"
# every example parses on its own and all together
awk '/^\.EX/{getline; if ($0 ~ /^rule "/) {f=1; print; next}} /^\.EE/{f=0} f' "$DOC" | sed -e 's/\\e/\\/g' -e 's/\\-/-/g' >"$T/all"
ok "all examples together pass ruleproc -t" ruleproc -t -R "$T/all"

ex "Reject executable attachments"
msg 'Subject: invoice\nContent-Type: multipart/mixed; boundary="xx"\n\n--xx\nContent-Type: text/plain\n\nPlease see the attachment.\n--xx\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="invoice.pdf.EXE"\nContent-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--xx--\n'
like "$(dec -f a@example.net -r alice@example.com)" '^reject 550 5.7.1 Executable attachments are not accepted; send a link' "executables: .EXE attachment rejected"
msg 'Subject: report\nContent-Type: multipart/mixed; boundary="xx"\n\n--xx\nContent-Type: application/pdf; name="report.pdf"\n\nJVBERi0=\n--xx--\n'
like "$(dec -f a@example.net -r alice@example.com)" '^deliver' "executables: a PDF passes"

ex "Dave has left"
msg 'Subject: hi\n\nhello\n'
is "$(out -f a@example.net -r dave@example.com -r alice@example.com | sed -n '/^RECIPIENTS:/,/^exit/p' | tr -s ' \n' ' ')" "RECIPIENTS: bob@example.com alice@example.com message: unchanged exit: 0 " "departed employee: redirected, others untouched"

ex "Archive sales"
is "$(out -f a@example.net -r sales@example.com | sed -n '/^RECIPIENTS:/,/^exit/p' | tr -s ' \n' ' ')" "RECIPIENTS: sales@example.com archive@example.com message: unchanged exit: 0 " "sales: copy to the archive"

ex "Mailing lists"
msg 'List-Id: Debian users <debian-user.lists.debian.org>\nSubject: x\n\nx\n'
like "$(out -r alice@example.com)" "alice@example.com -> folder Lists" "list mail filed into Lists"
msg 'Precedence: bulk\nSubject: x\n\nx\n'
like "$(out -r alice@example.com)" "folder Lists" "bulk precedence filed too (match any)"
msg 'Subject: x\n\nx\n'
nok "personal mail not filed" sh -c "ruleproc -n -q -R '$T/ex' -r alice@example.com <'$T/msg' | grep -q folder"

ex "Test domain sleeps"
msg 'Subject: x\n\nx\n'
is "$(dec -r qa@test.example.org -w 'wed 23:15')" "tempfail 451 4.3.2 Test system is offline at night, try later  (rule 1 \"Test domain sleeps\", line 1)" "test domain at 23:15: tempfail"
like "$(dec -r qa@test.example.org -w 'wed 05:59')" "^tempfail" "test domain at 05:59: tempfail"
like "$(dec -r qa@test.example.org -w 'wed 06:00')" "^deliver" "test domain at 06:00: delivered"
like "$(dec -r alice@example.com -w 'wed 23:15')" "^deliver" "other domains at night: delivered"

ex "Forged local sender"
like "$(dec -f alice@example.com -r bob@example.com -i 198.51.100.7)" "^reject 550 5.7.1 Use our server" "forged local sender from outside"
like "$(dec -f alice@example.com -r bob@example.com -i 192.168.1.20)" "^deliver" "local network may"
like "$(dec -f alice@example.com -r bob@example.com -i 198.51.100.7 -a alice)" "^deliver" "authenticated user may"
like "$(dec -f ALICE@EXAMPLE.ORG -r bob@example.com -i 2001:db8::1)" "^reject" "case and IPv6 do not help"

ex "Flagged spam"
msg 'X-Spam-Flag: YES\nSubject: cheap stuff\n\nx\n'
o=$(out -r alice@example.com)
like "$o" 'subject: *"\[SPAM\] cheap stuff"' "flagged spam: subject tagged"
like "$o" "alice@example.com -> folder Junk" "flagged spam: into Junk"

ex "Closed domain"
like "$(dec -r x@old.example.net)" "^reject 550 5.1.1 This domain no longer receives mail" "closed domain rejected"
like "$(ruleproc -n -R "$T/ex" -r x@old.example.net <"$T/msg" | grep 'RCPT TO')" "RCPT TO:<x@old.example.net>: 550 5.1.1" "closed domain: rejected already at RCPT"

ex "Nuisance"
like "$(dec -f deals@offers.example -r alice@example.com)" "^discard" "nuisance sender discarded"

ex "Too big"
awk 'BEGIN{print "Subject: big\n"; for(i=0;i<300000;i++) print "0123456789012345678901234567890123456789012345678901234567890123456789"}' >"$T/msg"
like "$(dec -r alice@example.com -i 203.0.113.9)" "^reject 552 5.3.4" "21 MB from outside rejected"
like "$(dec -r alice@example.com -i 192.168.3.4)" "^deliver" "21 MB from the office passes"

ex "Fake HELO"
msg 'Subject: x\n\nx\n'
like "$(dec -r alice@example.com -i 203.0.113.9 -H mail.example.com)" "^reject 550 5.7.1 You are not example.com" "fake HELO rejected"
like "$(dec -r alice@example.com -i 203.0.113.9 -H mail.example.net)" "^deliver" "other HELO passes"
like "$(ruleproc -n -R "$T/ex" -r alice@example.com -i 203.0.113.9 -H mail.example.com <"$T/msg" | grep '^  HELO: ')" "HELO: 550 5.7.1 You are not example.com" "fake HELO: the policy service answers at HELO already"

ex "Weekend support"
like "$(out -r support@example.com -w 'sun 10:00')" "oncall@example.com" "weekend: copy to on-call"
nok "weekday: no copy" sh -c "ruleproc -n -q -R '$T/ex' -r support@example.com -w 'mon 10:00' <'$T/msg' | grep -q oncall"

ex "Lottery"
msg 'Subject: You are a Jackpot   WINNER\n\nhi\n'
like "$(dec -r alice@example.com)" "^reject 550 5.7.1 Looks like a scam" "lottery subject (regex, case-insensitive)"
msg 'Subject: hello\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nRGVhciBmcmllbmQsCnBsZWFzZSBjbGFpbSB5b3VyIHByaXplIHRvZGF5Lgo=\n'
like "$(dec -r alice@example.com)" "^reject" "lottery body inside base64 found"
msg 'Subject: hello\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nplease claim your pri=\nze today\n'
like "$(dec -r alice@example.com)" "^reject" "lottery body across a quoted-printable soft break found"

ex "Checked"
like "$(out -r alice@example.com)" "add header: X-Rules: checked by ruleproc" "checked header added"
