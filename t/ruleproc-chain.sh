# ruleproc as a chain filter: envelope from the environment, message on
# stdin (file or pipe), next program run with the new envelope/message.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
cat >"$T/next" <<EOF
#!/bin/sh
{ echo "RECIPIENTS=\$RECIPIENTS"; echo "FOLDERS=\${FOLDERS:-}"; echo "SENDER=\$SENDER"; } >"$T/env.out"
cat >"$T/msg.out"
echo "next: done" >&2
exit \${NEXT_EXIT:-0}
EOF
chmod +x "$T/next"
cat >"$C/rules" <<'EOF'
rule "Reject executables"
    attachment *.exe *.scr
    reject 550 5.7.1 "Executable attachments are not accepted"
rule "Night test domain"
    recipient *@test.example.org
    time 22:00-06:00
    tempfail 451 4.3.2 "Test domain sleeps"
rule "Junk"
    match any
    header Subject "*viagra*"
    body /cheap +pills/
    tag-subject [SPAM]
    add-header X-Spam yes
    folder Junk
    continue
rule "Dave has left"
    recipient dave@example.com
    redirect bob@example.com
rule "Archive sales"
    recipient sales@example.com
    copy archive@example.com
    continue
rule "Silent"
    sender *@junk.example
    discard
rule "Drop carol only"
    recipient carol@example.com
    sender *@annoying.example
    discard
EOF
run() { # ENV... -- runs ruleproc with the next program on $T/msg
	env "$@" ruleproc -c "$C" "$T/next" <"$T/msg" >/dev/null 2>"$T/err"
}
rm -f "$T/env.out" "$T/msg.out"
printf 'From: a@example.net\nSubject: hello\n\nplain text\n' >"$T/msg"
run SENDER=a@example.net RECIPIENTS=alice@example.com; is "$?" 0 "no rule matches: next program's exit"
is "$(cat "$T/msg.out")" "$(cat "$T/msg")" "message passed unchanged"
is "$(sed -n 1p "$T/env.out")" "RECIPIENTS=alice@example.com" "recipients unchanged"
is "$(tail -n 1 "$T/err")" "next: done" "next program ran"

run SENDER=a@example.net RECIPIENTS=alice@example.com NEXT_EXIT=111; is "$?" 111 "next program's temporary failure propagates"
run SENDER=a@example.net RECIPIENTS=alice@example.com NEXT_EXIT=100; is "$?" 100 "next program's permanent failure propagates"

printf 'From: a@example.net\nSubject: buy viagra\n\ntext\n' >"$T/msg"
run SENDER=a@example.net "RECIPIENTS=$(printf 'dave@example.com\nsales@example.com\nalice@example.com')"; is "$?" 0 "changed message delivered"
is "$(sed -n 2p "$T/msg.out")" "Subject: [SPAM] buy viagra" "subject tagged"
is "$(sed -n 3p "$T/msg.out")" "X-Spam: yes" "header added at the end of the header"
is "$(tail -n 1 "$T/msg.out")" "text" "body kept"
is "$(sed -n '/^RECIPIENTS=/,/^FOLDERS=/p' "$T/env.out" | sed '$d' | tr '\n' ' ')" "RECIPIENTS=bob@example.com sales@example.com alice@example.com archive@example.com " "redirect and copy rewrite RECIPIENTS"
like "$(cat "$T/env.out")" "FOLDERS=bob@example.com	Junk" "folder set for the redirected recipient"
like "$(cat "$T/env.out")" "alice@example.com	Junk" "folder set per recipient"

# a pipe on stdin works the same, the next program gets a seekable file
printf 'Subject: offer\n\ncheap   pills\n' | SENDER=x@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" sh -c 'cat >"$0/msg.out"; [ -f /dev/stdin ] && echo seekable >"$0/seek"' "$T" 2>/dev/null
is "$(head -n 1 "$T/msg.out")" "Subject: [SPAM] offer" "pipe: body regex matched, subject tagged"
is "$(cat "$T/seek" 2>/dev/null)" seekable "pipe: next program reads a file"
printf 'Subject: fine\n\nhi\n' | SENDER=x@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" sh -c 'cat >"$0/msg.out"' "$T" 2>/dev/null
is "$(cat "$T/msg.out")" "$(printf 'Subject: fine\n\nhi')" "pipe: unchanged message passed through"
is "$(ls "$T/spool" | wc -l)" 0 "no temp files left in the spool"

# no Subject at all: one is added
printf 'From: x\n\ncheap pills\n' >"$T/msg"
run SENDER=x@example.net RECIPIENTS=alice@example.com
is "$(grep -c '^Subject: \[SPAM\]$' "$T/msg.out")" 1 "missing subject: tagged one added"
# already tagged: not tagged twice
printf 'Subject: [SPAM] viagra\n\nx\n' >"$T/msg"
run SENDER=x@example.net RECIPIENTS=alice@example.com
is "$(grep '^Subject' "$T/msg.out")" "Subject: [SPAM] viagra" "already tagged subject left alone"

# reject, tempfail, discard
printf 'Subject: invoice\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream; name="invoice.exe"\nContent-Transfer-Encoding: base64\n\nTVqQ\n--b--\n' >"$T/msg"
rm -f "$T/msg.out"
run SENDER=x@example.net RECIPIENTS=alice@example.com; is "$?" 100 "reject exits 100"
is "$(tail -n 1 "$T/err")" "5.7.1 Executable attachments are not accepted" "last stderr line is the reason"
nok "next program not run after reject" test -f "$T/msg.out"
printf 'Subject: x\n\nx\n' >"$T/msg"
SENDER=x RECIPIENTS=qa@test.example.org ruleproc -w "tue 23:10" -c "$C" "$T/next" <"$T/msg" >/dev/null 2>"$T/err"; is "$?" 111 "tempfail at night exits 111"
is "$(tail -n 1 "$T/err")" "4.3.2 Test domain sleeps" "tempfail reason last on stderr"
SENDER=x RECIPIENTS=qa@test.example.org ruleproc -w "tue 12:00" -c "$C" "$T/next" <"$T/msg" >/dev/null 2>"$T/err"; is "$?" 0 "same domain by day: delivered"
rm -f "$T/msg.out"
run SENDER=spam@junk.example RECIPIENTS=alice@example.com; is "$?" 0 "discard exits 0"
nok "discard does not run the next program" test -f "$T/msg.out"
run SENDER=x@annoying.example "RECIPIENTS=$(printf 'carol@example.com\nalice@example.com')"
is "$(sed -n 1p "$T/env.out")" "RECIPIENTS=alice@example.com" "per-recipient discard drops only that recipient"
rm -f "$T/msg.out"
run SENDER=x@annoying.example RECIPIENTS=carol@example.com; is "$?" 0 "all recipients discarded: exit 0"
nok "all discarded: next program not run" test -f "$T/msg.out"

# inherited FOLDERS lines for other recipients are kept
printf 'Subject: viagra\n\nx\n' >"$T/msg"
run SENDER=x "RECIPIENTS=$(printf 'alice@example.com\nbob@example.com')" "FOLDERS=$(printf 'dave@example.com\tLists\nalice@example.com\tOld')"
is "$(sed -n '/^FOLDERS=/,/^SENDER=/p' "$T/env.out" | sed '$d' | tr '\t\n' ':|')" "FOLDERS=dave@example.com:Lists|alice@example.com:Junk|bob@example.com:Junk|" "FOLDERS merged: others kept, ours replace"

# cannot run the next program: temporary
SENDER=x RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/does-not-exist" <"$T/msg" >/dev/null 2>"$T/err"; is "$?" 111 "missing next program: 111"
is "$(tail -n 1 "$T/err")" "4.3.0 ruleproc: cannot run the next program" "missing next program: reason"
nok "usage error without a program" ruleproc -c "$C"

# ---- added fields handed to deliver (MXHEADERS), not a rewritten copy ----
cat >"$C/rules" <<'R'
rule "Mark"
    add-header X-Checked "by ruleproc"
    add-header X-Second two
R
mkdir -p "$T/fake" && cat >"$T/fake/deliver" <<EOF
#!/bin/sh
printf '%s|%s' "\$MXHEADERS_AT" "\$MXHEADERS" >"$T/fake.env"
cat >"$T/fake.msg"
EOF
chmod +x "$T/fake/deliver"
printf 'Return-Path: <old@example.net>\nFrom: a@example.net\nSubject: hi\n\nbody line\n' >"$T/msg"
SENDER=a@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/fake/deliver" <"$T/msg" 2>"$T/err"
is "$(cat "$T/fake.env")" "$(printf '%s|X-Checked: by ruleproc\nX-Second: two\n' "$(sed -n '1,3p' "$T/msg" | wc -c | tr -d ' ')")" \
    "next program deliver: the fields and the header's end in MXHEADERS, MXHEADERS_AT"
is "$(cat "$T/fake.msg")" "$(cat "$T/msg")" "... and the message itself unchanged (no copy)"
MXHEADERS="X-Stale: 1" SENDER=a@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/next" <"$T/msg" 2>/dev/null
is "$(grep -c '^X-Checked: by ruleproc$' "$T/msg.out")" 1 "another next program: the rewritten message, as before"
is "$(cat "$T/env.out" "$T/msg.out" | grep -c 'X-Stale')" 0 "... and an inherited MXHEADERS is not passed on"
# what deliver writes is the rewritten message, byte for byte
rm -rf "$T/mail/alice"
SENDER=a@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" "$BIN/deliver" -c "$C" <"$T/msg" 2>"$T/err"; is "$?" 0 "ruleproc -> deliver: delivered"
f1=$(ls "$T/mail/alice/new/"* 2>/dev/null | head -n 1)
cp "$f1" "$T/f1" 2>/dev/null
rm -rf "$T/mail/alice"
SENDER=a@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/next" <"$T/msg" 2>/dev/null
SENDER=a@example.net RECIPIENTS=alice@example.com deliver -c "$C" <"$T/msg.out" 2>/dev/null
f2=$(ls "$T/mail/alice/new/"* 2>/dev/null | head -n 1)
ok "the same Maildir file as deliver given the rewritten message" cmp "$T/f1" "$f2"
is "$(grep -c '^Return-Path: <old@' "$T/f1")" 0 "... the old Return-Path still dropped"
is "$(grep -c '^X-Checked: by ruleproc$' "$T/f1")" 1 "... the field is in it once"
# a relayed recipient: the queued copy has the fields too
SENDER=a@example.net RECIPIENTS=someone@elsewhere.test ruleproc -c "$C" "$BIN/deliver" -c "$C" <"$T/msg" 2>"$T/err"
is "$?" 0 "a relayed recipient: queued"
q=$(ls -t "$T/queue/mess/"* 2>/dev/null | head -n 1)
is "$(grep -c '^X-Checked: by ruleproc$' "$q" 2>/dev/null)" 1 "... the queued message has the added field"
# deliver refuses what is not header fields, or a place outside the message
out=$(MXHEADERS="$(printf 'not a field\n')" MXHEADERS_AT=10 SENDER=a@example.net RECIPIENTS=alice@example.com deliver -c "$C" <"$T/msg" 2>&1); r=$?
is "$r:$(echo "$out" | tail -n 1)" "111:4.3.0 deliver: bad MXHEADERS from the previous program" "deliver: MXHEADERS that is not fields: 111"
nl='
'
out=$(MXHEADERS="X-A: 1$nl" MXHEADERS_AT=999999 SENDER=a@example.net RECIPIENTS=alice@example.com deliver -c "$C" <"$T/msg" 2>&1); r=$?
is "$r:$(echo "$out" | grep -c 'MXHEADERS_AT is not a place')" 111:1 "deliver: MXHEADERS_AT past the message: 111"
printf 'rule "Folder only"\n    sender *@nowhere.example\n    folder Junk\n' >"$C/rules"
MXHEADERS="X-Stale: 1
" MXHEADERS_AT=3 SENDER=a@example.net RECIPIENTS=alice@example.com ruleproc -c "$C" "$T/fake/deliver" <"$T/msg" 2>/dev/null
is "$(cat "$T/fake.env")" "|" "nothing added: an inherited MXHEADERS does not reach deliver either"
