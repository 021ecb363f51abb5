# deliver: forwards, relayed and backup-MX mail into the queue; partial
# failures queued durably (never delivered twice); loops and hop limits.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
M=$T/mail
Q=$T/queue
dl() { deliver -c "$C" "$@"; }
nfiles() { find "$1" -type f 2>/dev/null | wc -l | tr -d ' '; }
only() { ls "$1"/new/* 2>/dev/null | head -n 1; }
reset() { rm -rf "$M"/* "$Q"/*; }
info() { cat "$Q"/info/* 2>/dev/null; }
rcpts() { info | grep '^rcpt' | cut -f 2,6,7,8,9 | tr '\t' ' '; }
printf 'Subject: q\n\nqueued body\n' >"$T/m1"

# a forward: into the queue, message as received, Delivered-To to add
reset
ok "forward dave -> dave@elsewhere.test" dl -f s@example.net dave@example.com <"$T/m1"
is "$(ls "$Q/info" | wc -l | tr -d ' ')" 1 "one queue entry"
id=$(ls "$Q/info")
ok "message file is the message as received" cmp "$Q/mess/$id" "$T/m1"
is "$(rcpts)" "pending forward dave@elsewhere.test dave@example.com dave@example.com" "forward: pending, Delivered-To dave@example.com to add"
like "$(info | head -n 1)" '^mxqueue 1$' "info starts with the version line"
is "$(info | grep '^sender ')" "sender s@example.net" "info: sender"
is "$(info | grep '^size ')" "size $(stat -c %s "$T/m1")" "info: size"
is "$(info | tail -n 1)" "end" "info: ends with 'end'"
is "$(nfiles "$Q/tmp")" 0 "nothing left in the queue's tmp/"

# relayed and backup-MX recipients go as they are
reset
ok "relay and backup recipients" dl -f s@example.net x@elsewhere.test y@backup.example <"$T/m1"
is "$(rcpts)" "pending relay x@elsewhere.test x@elsewhere.test 
pending relay y@backup.example y@backup.example " "relay + backup: pending relay, no Delivered-To"

# mixed: local delivered, forward queued, one entry
reset
ok "alice + dave" dl -f s@example.net alice@example.com dave@example.com <"$T/m1"
is "$(nfiles "$M/alice/new")/$(ls "$Q/info" | wc -l | tr -d ' ')" "1/1" "alice delivered, dave queued"

# one delivered, one unknown: exit 0, the failure kept for a bounce
reset
dl -f s@example.net alice@example.com nosuch@example.com <"$T/m1" 2>/dev/null; rc=$?
is "$rc" 0 "delivered + unknown: exit 0 (the failure is queued for a bounce)"
is "$(rcpts)" "failed local nosuch@example.com nosuch@example.com " "unknown recipient recorded as failed"
like "$(info | grep '^rcpt' | cut -f 12)" '^5\.1\.1 ' "failed recipient keeps its 5.x.y reason"

# partial temporary failure: bob's Maildir unwritable; alice must not get
# it twice, so bob goes to the queue and the exit is 0
if [ "$(id -u)" = 0 ] || [ "$(id -un)" != root ]; then
reset
mkdir -p "$M/bob/tmp" "$M/bob/new" "$M/bob/cur"; chmod 555 "$M/bob/new"
[ "$(id -u)" = 0 ] && chown -R nobody "$M/bob"
dl -f s@example.net alice@example.com bob@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 0 "alice ok, bob's Maildir unwritable: exit 0"
is "$(nfiles "$M/alice/new")" 1 "alice delivered once"
is "$(rcpts)" "pending maildir bob@example.com bob@example.com " "bob queued as a Maildir retry"
is "$(info | grep '^rcpt' | cut -f 10)" "bob/" "the retry names bob's Maildir"
like "$(info | grep '^rcpt' | cut -f 12)" '^4\.[0-9]\.[0-9] ' "the retry keeps the 4.x.y reason"
ok "queued message file is the original" cmp "$Q/mess/$(ls "$Q/info")" "$T/m1"
# the same with the queue unwritable too: 111, and the log says why
reset
mkdir -p "$M/bob/tmp" "$M/bob/new" "$M/bob/cur"; chmod 555 "$M/bob/new"
[ "$(id -u)" = 0 ] && chown -R nobody "$M/bob"
chmod 555 "$Q"
dl -f s@example.net alice@example.com bob@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 111 "queue unwritable as well: exit 111"
like "$(tail -n 1 "$T/err")" '^4\.3\.0 ' "last line 4.3.0"
like "$(cat "$T/err")" 'deliver them again' "the at-least-once edge is logged"
chmod 777 "$Q"
# nothing delivered yet: plain temporary failure, nothing queued
reset
mkdir -p "$M/bob/tmp" "$M/bob/new" "$M/bob/cur"; chmod 555 "$M/bob/new"
[ "$(id -u)" = 0 ] && chown -R nobody "$M/bob"
dl -f s@example.net bob@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 111 "only recipient's Maildir unwritable: exit 111"
like "$(tail -n 1 "$T/err")" '^4\.[0-9]\.[0-9] .*bob' "reason names the Maildir"
is "$(ls "$Q/info" 2>/dev/null | wc -l | tr -d ' ')" 0 "nothing queued"
dl -x -f s@example.net bob@example.com <"$T/m1" 2>/dev/null; is "$?" 75 "-x: temporary failure exits 75"
chmod 755 "$M/bob/new"
else
skip "partial-failure tests need an unprivileged user or root"
fi

# loops: Delivered-To for this recipient, and the hop limit
reset
printf 'Delivered-To: Alice@Example.com\nSubject: loop\n\nx\n' >"$T/loop"
dl -f s@example.net alice@example.com <"$T/loop" 2>"$T/err"; rc=$?
is "$rc" 100 "Delivered-To: alice already present: exit 100"
like "$(tail -n 1 "$T/err")" '^5\.4\.6 ' "mail loop: 5.4.6"
is "$(nfiles "$M")" 0 "loop: nothing delivered"
dl -f s@example.net alice@example.com bob@example.com <"$T/loop" 2>/dev/null; rc=$?
is "$rc/$(nfiles "$M/bob/new")/$(nfiles "$M/alice/new")" "0/1/0" "loop for alice only: bob still gets it"
is "$(rcpts)" "failed local alice@example.com alice@example.com " "the looping recipient is queued as failed"
reset
printf 'Delivered-To: dave@example.com\n\nx\n' | dl -f s@example.net dave@example.com 2>/dev/null
is "$?" 100 "a forward that comes back: 5.4.6"
reset
{ i=0; while [ $i -lt 100 ]; do echo "Received: from h$i by x; Mon, 1 Jan 2024 00:00:00 +0000"; i=$((i+1)); done; printf 'Subject: hops\n\nx\n'; } >"$T/hops"
dl -f s@example.net alice@example.com <"$T/hops" 2>"$T/err"; rc=$?
is "$rc" 100 "100 Received: lines: exit 100"
like "$(tail -n 1 "$T/err")" '^5\.4\.6 too many hops' "hop limit: 5.4.6 too many hops"
sed -i 's/^max_hops .*/max_hops 200/' "$C/settings"
ok "max_hops 200 lets it through" dl -f s@example.net alice@example.com <"$T/hops"

# alias loops and depth, with a table of our own
reset
cat >>"$C/mailboxes" <<'EOF'
loopa@example.com loopb@example.com
loopb@example.com loopa@example.com
loopc@example.com loopd@example.com, carol@example.com
loopd@example.com loopc@example.com
d1@example.com d2@example.com
d2@example.com d3@example.com
d3@example.com d4@example.com
d4@example.com d5@example.com
d5@example.com d6@example.com
d6@example.com d7@example.com
d7@example.com d8@example.com
d8@example.com d9@example.com
d9@example.com d10@example.com
d10@example.com d11@example.com
d11@example.com d12@example.com
d12@example.com alice/
broken@example.com nosuch@example.com, carol@example.com
EOF
mkcdb -c "$C" >/dev/null
dl -f s@example.net loopa@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 100 "alias cycle with no mailbox: exit 100"
like "$(tail -n 1 "$T/err")" '^5\.4\.6 ' "alias cycle: 5.4.6"
ok "alias cycle with a real member" dl -f s@example.net loopc@example.com <"$T/m1"
is "$(nfiles "$M/carol/new")" 1 "alias cycle: the real member gets one copy"
dl -f s@example.net d1@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 100 "alias nesting deeper than 10: exit 100"
like "$(tail -n 1 "$T/err")" '^5\.4\.6 .*deep' "alias depth: 5.4.6 too deep"
ok "list with one broken member" dl -f s@example.net broken@example.com <"$T/m1"
is "$(nfiles "$M/carol/new")" 2 "the working members still get it"
