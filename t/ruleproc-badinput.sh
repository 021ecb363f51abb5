# Bad input through the chain filter and the dry run: malformed headers,
# 10,000 header lines, a 1 MiB header line, invalid base64, NULs, binary
# junk, huge messages. Always a decision, never a crash, bounded memory.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
cat >"$C/rules" <<'EOF'
rule "Executables"
    attachment *.exe
    reject 550 5.7.1 "No executables"
rule "Spam"
    match any
    header Subject *viagra*
    body *viagra*
    tag-subject [SPAM]
    add-header X-Spam yes
rule "Mark"
    add-header X-Rules checked
EOF
cat >"$T/next" <<EOF
#!/bin/sh
cat >"$T/msg.out"
EOF
chmod +x "$T/next"
# memory: the programs stream; 64 MB of address space is plenty unless
# something buffers a whole message (skipped under ASan)
lim() { case $BUILD in *asan*) "$@" ;; *) ( ulimit -v 65536; "$@" ) ;; esac; }
chain() { rm -f "$T/msg.out"; lim env SENDER=x@example.net RECIPIENTS=alice@example.com "$BIN/ruleproc" -c "$C" "$T/next" <"$1" >/dev/null 2>"$T/err"; }
dry() { lim "$BIN/ruleproc" -n -q -c "$C" -f x@example.net -r alice@example.com <"$1" 2>&1 | sed -n 's/^decision: *//p'; }
body_of() { sed '1,/^$/d' "$1"; }

# malformed header lines
printf '\tcontinuation first\nFrom: x\n: empty name\nBad Name: x\nSubject: ok\n\nbody\n' >"$T/m"
chain "$T/m"; is "$?" 0 "malformed header: delivered"
is "$(dry "$T/m")" "deliver" "malformed header: a decision"
is "$(sed 1d "$T/msg.out")" "$(cat "$T/m")" "malformed header: message kept, header added before the first non-header line"
is "$(head -n 1 "$T/msg.out")" "X-Rules: checked" "malformed header: header added"
printf 'From: x\nSubject viagra no colon\nX-After: 1\n\nbody\n' >"$T/m"
chain "$T/m"
is "$(sed -n 1,3p "$T/msg.out" | tr '\n' '|')" "From: x|X-Spam: yes|Subject: [SPAM]|" "a non-header line ends the header (it is body, as in Postfix)"

# 10,000 header lines
awk 'BEGIN{for(i=0;i<10000;i++) printf "X-Line-%d: %d\n", i, i; print "Subject: buy viagra"; print ""; print "body"}' >"$T/m"
chain "$T/m"; is "$?" 0 "10,000 header lines: delivered"
is "$(grep -c '^X-Line-' "$T/msg.out")" 10000 "10,000 header lines: all passed on"
is "$(grep '^Subject' "$T/msg.out")" "Subject: [SPAM] buy viagra" "10,000 header lines: subject after them tagged"

# a 1 MiB header line (Subject) and a 1 MiB other line
awk 'BEGIN{printf "Subject: viagra "; for(i=0;i<1048576/16;i++) printf "0123456789abcdef"; print ""; printf "X-Long: "; for(i=0;i<1048576/16;i++) printf "0123456789abcdef"; print ""; print ""; print "body"}' >"$T/m"
chain "$T/m"; is "$?" 0 "1 MiB header lines: delivered"
like "$(head -c 40 "$T/msg.out")" "^Subject: \[SPAM\] viagra 0123456789abcdef" "1 MiB subject: tagged"
is "$(wc -c <"$T/msg.out")" "$(( $(wc -c <"$T/m") + 7 + 12 ))" "1 MiB lines: nothing lost (tag and header added)"
is "$(dry "$T/m")" "deliver" "1 MiB lines: dry run decides"

# invalid base64 in a text part, with the match in the valid part
printf 'Subject: x\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n@@@@ not base64 ****\ndmlhZ3JhIQ==\n%%%%%%\n' >"$T/m"
chain "$T/m"; is "$?" 0 "invalid base64: delivered"
is "$(grep '^Subject' "$T/msg.out")" "Subject: [SPAM] x" "invalid base64: the valid part still decoded and matched"
is "$(body_of "$T/msg.out")" "$(body_of "$T/m")" "invalid base64: body untouched"
# invalid base64 in an attachment part
printf 'Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream; name="a.exe"\nContent-Transfer-Encoding: base64\n\n!!!!\n--b--\n' >"$T/m"
chain "$T/m"; is "$?" 100 "broken attachment still rejected by name"

# NULs in header and body
printf 'Subject: via\000gra\nX-Nul: \000\000\n\nbody \000 viagra \000\n' >"$T/m"
chain "$T/m"; is "$?" 0 "NULs: delivered"
is "$(grep -c '^X-Spam: yes' "$T/msg.out")" 1 "NULs: body still matched"
is "$(body_of "$T/msg.out" | od -c | grep -c '\\0')" "$(body_of "$T/m" | od -c | grep -c '\\0')" "NULs: passed on untouched"

# binary junk, no header at all
head -c 2000000 /dev/urandom >"$T/m"
chain "$T/m"; r=$?
case $r in 0|100) echo "ok - random bytes: a decision ($r)" ;; *) echo "not ok - random bytes: exit $r"; cat "$T/err" ;; esac
is "$(dry "$T/m" | cut -c1-7 | sed 's/ .*//')" "$( [ $r = 0 ] && echo deliver || echo reject)" "random bytes: dry run agrees"
if [ "$r" = 0 ]; then
	is "$(tail -c 2000000 "$T/msg.out" | cmp - "$T/m" && echo same)" same "random bytes: message bytes kept"
fi

# empty message, only blank lines, no final newline
: >"$T/m"; chain "$T/m"; is "$?" 0 "empty message"
is "$(cat "$T/msg.out")" "X-Rules: checked" "empty message: header only"
printf '\n\n\n' >"$T/m"; chain "$T/m"; is "$?" 0 "blank lines only"
printf 'Subject: viagra' >"$T/m"; chain "$T/m"; is "$?" 0 "header without final newline"
is "$(cat "$T/msg.out" | tr '\n' '|')" "Subject: [SPAM] viagra|X-Spam: yes||" "header without final newline: repaired"

# 40 MB in one line without a newline, through a pipe, in 64 MB
head -c 40000000 /dev/zero | tr '\0' 'v' >"$T/m"
rm -f "$T/msg.out"
cat "$T/m" | lim env SENDER=x RECIPIENTS=alice@example.com "$BIN/ruleproc" -c "$C" "$T/next" >/dev/null 2>"$T/err"; is "$?" 0 "40 MB line through a pipe: delivered in bounded memory"
is "$(wc -c <"$T/msg.out")" "$(( 40000000 + 17 ))" "40 MB line: all bytes passed on (not a header: ours goes first)"
# 30 MB MIME message with many parts
awk 'BEGIN{print "Subject: parts"; print "Content-Type: multipart/mixed; boundary=zz"; print ""; for(p=0;p<3000;p++){print "--zz"; print "Content-Type: text/plain"; print "Content-Transfer-Encoding: base64"; print ""; for(i=0;i<130;i++) print "dmlhZ3JhIGlzIGhlcmUgaW4gYmFzZTY0IGRhdGEgZm9yIHRoZSB0ZXN0IHJlYWxseSBsb25n"}; print "--zz--"}' >"$T/m"
chain "$T/m"; is "$?" 0 "30 MB, 3000 parts: delivered"
is "$(grep '^Subject' "$T/msg.out")" "Subject: [SPAM] parts" "30 MB: body match in the first part"
ls "$T/spool" | grep -q . && echo "not ok - temp files left in the spool" || echo "ok - no temp files left in the spool"
