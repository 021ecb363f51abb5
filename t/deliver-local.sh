# deliver: Maildir delivery from a shell: headers, bytes, links, aliases,
# catch-all, extensions, duplicates, folders, exit codes.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
M=$T/mail
dl() { deliver -c "$C" "$@"; }
nfiles() { find "$1" -type f 2>/dev/null | wc -l | tr -d ' '; }
only() { ls "$1"/new/* 2>/dev/null | head -n 1; }
clear() { rm -rf "$M"/*; }

printf 'Subject: one\n\nbody line\n' >"$T/m1"

# a single recipient: Return-Path, Delivered-To, then the bytes as sent
clear
ok "deliver to one mailbox exits 0" dl -f sender@example.net alice@example.com <"$T/m1"
f=$(only "$M/alice")
{ printf 'Return-Path: <sender@example.net>\nDelivered-To: alice@example.com\n'; cat "$T/m1"; } >"$T/want"
ok "file in alice/new has Return-Path, Delivered-To and the message byte for byte" cmp "$f" "$T/want"
is "$(nfiles "$M/alice/tmp")" 0 "nothing left in tmp/"
is "$(stat -c %a "$f")" 600 "the file is mode 0600"
like "$(basename "$f")" '^[0-9]+\.M[0-9]{6}P[0-9]+Q[0-9]+\.mx\.example\.com,S=[0-9]+$' "unique name time.MusecPpidQn.host,S=size"
is "${f##*,S=}" "$(stat -c %s "$f")" "S= is the exact size"
is "$(stat -c %U "$f")" "$( [ "$(id -u)" = 0 ] && echo nobody || id -un)" "written as the unprivileged user"

# envelope from the environment, message from a pipe
clear
cat "$T/m1" | SENDER=x@example.net RECIPIENTS="bob@example.com
carol@example.com" dl
ok "piped message, SENDER/RECIPIENTS: bob got it" test -n "$(only "$M/bob")"
ok "piped message: carol got it" test -n "$(only "$M/carol")"
is "$(tail -n +2 "$(only "$M/bob")")" "$(cat "$T/m1")" "piped message: bytes intact"

# RECIPIENTS with CR LF line ends and blanks (hand-made environments)
clear
RECIPIENTS="$(printf ' bob@example.com\r\ncarol@example.com \r\n\n')" SENDER=x@example.net dl <"$T/m1"
is "$?/$(nfiles "$M/bob/new")/$(nfiles "$M/carol/new")" "0/1/1" "RECIPIENTS with CR LF and blanks"

# two recipients: one data write, one link each (same inode)
clear
ok "two recipients" dl -f s@example.net alice@example.com bob@example.com <"$T/m1"
a=$(only "$M/alice"); b=$(only "$M/bob")
is "$(stat -c %i "$a")" "$(stat -c %i "$b")" "two Maildirs share one inode (one write, links)"
is "$(stat -c %h "$a")" 2 "link count 2"
ok "a file shared by two recipients names neither (Bcc stays private)" sh -c "! grep -q '^Delivered-To:' '$a'"

# the order of the writes that make it durable: the data before any link;
# an unnamed file's inode again after its links (its link count: without
# a journal, fsync(new/) does not write it); then each new/ (the
# Maildirs are made first: their own fsyncs come before the file)
if command -v strace >/dev/null; then
	clear
	strace -f -qq -e trace=openat,linkat,fsync -o "$T/st" \
	    deliver -c "$C" -f s@example.net alice@example.com bob@example.com <"$T/m1"
	fd=$(sed -n 's/.*O_TMPFILE.*= \([0-9][0-9]*\)$/\1/p' "$T/st" | head -n 1)
	if [ -n "$fd" ]; then
		calls=$(awk -v fd="$fd" '/O_TMPFILE/ { go = 1 } !go { next } /linkat\(/ { printf "link " } /fsync\(/ { printf "%s ", $0 ~ "fsync\\(" fd "\\)" ? "file" : "dir" }' "$T/st")
		is "$calls" "file link link file dir dir " \
		    "unnamed file: fsync, 2 links, fsync of the file again, fsync of both new/"
	else
		skip "no O_TMPFILE here: the order of an unnamed file's fsyncs"
	fi
else
	skip "no strace: the order of the fsyncs"
fi

# -D: a copy per recipient, each with its own Delivered-To
clear
ok "-D: two recipients" dl -D -f s@example.net alice@example.com bob@example.com <"$T/m1"
ok "-D: alice's copy says Delivered-To: alice" grep -qx 'Delivered-To: alice@example.com' "$(only "$M/alice")"
ok "-D: bob's copy says Delivered-To: bob" grep -qx 'Delivered-To: bob@example.com' "$(only "$M/bob")"

# the same recipient twice, in any case: one copy
clear
ok "same recipient twice" dl -f s@example.net alice@example.com ALICE@Example.COM '<alice@example.com>' <"$T/m1"
is "$(nfiles "$M/alice/new")" 1 "same recipient twice: one copy"

# alias fan-out and a list overlapping a direct recipient
clear
ok "alias sales -> alice, bob" dl -f s@example.net sales@example.com <"$T/m1"
is "$(nfiles "$M/alice/new") $(nfiles "$M/bob/new")" "1 1" "alias fan-out: one copy each"
ok "alias fan-out: Delivered-To names the envelope recipient" grep -qx 'Delivered-To: sales@example.com' "$(only "$M/bob")"
clear
ok "alice and sales" dl -f s@example.net alice@example.com sales@example.com <"$T/m1"
is "$(nfiles "$M/alice/new") $(nfiles "$M/bob/new")" "1 1" "direct + list to the same mailbox: still one copy"
clear
ok "postmaster -> alice (alias chain)" dl -f s@example.net postmaster@example.net <"$T/m1"
is "$(nfiles "$M/alice/new")" 1 "alias in another domain reaches alice"

# catch-all and extensions
clear
ok "catch-all" dl -f s@example.net whoever@example.org <"$T/m1"
is "$(nfiles "$M/catchall/new")" 1 "catch-all domain: into catchall/"
clear
ok "extension" dl -f s@example.net alice+news@example.com <"$T/m1"
is "$(nfiles "$M/alice/new")" 1 "user+tag reaches user"
ok "extension: Delivered-To keeps the full address" grep -qx 'Delivered-To: alice+news@example.com' "$(only "$M/alice")"

# unknown user: permanent, reason on the last line
clear
dl -f s@example.net nosuch@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 100 "unknown local user: exit 100"
like "$(tail -n 1 "$T/err")" '^5\.1\.1 ' "unknown local user: last stderr line 5.1.1"
is "$(nfiles "$M")" 0 "unknown local user: nothing written"
dl -x -f s@example.net nosuch@example.com <"$T/m1" 2>/dev/null; is "$?" 67 "-x: unknown user exits 67 (EX_NOUSER)"
dl -f s@example.net <"$T/m1" 2>/dev/null; is "$?" 100 "no recipients: exit 100"

# null sender; an old Return-Path is replaced
clear
printf 'Return-Path: <forged@evil.test>\n  continued\nSubject: bounce\n\nx\n' | dl -f '' alice@example.com
f=$(only "$M/alice")
is "$(head -n 1 "$f")" "Return-Path: <>" "null sender: Return-Path: <>"
is "$(grep -c -i '^Return-Path:' "$f")" 1 "an old Return-Path (and its folded line) is dropped"
ok "old Return-Path continuation dropped too" sh -c "! grep -q continued '$f'"

# bytes: no final newline, 8-bit, 998-octet lines, CR bytes kept as they are
clear
python3 - "$T/m2" <<'EOF'
import sys
body = b"Subject: bytes\n\n" + b"\xe4\xf6\xfc 8-bit \xff\x00 nul\n" + b"x" * 998 + b"\n" + b".leading dot\n" + b"no final newline"
open(sys.argv[1], "wb").write(body)
EOF
ok "awkward bytes delivered" dl -f s@example.net alice@example.com <"$T/m2"
tail -n +3 "$(only "$M/alice")" >"$T/got2"
ok "8-bit, NUL, 998-octet line, no final newline: byte for byte" cmp "$T/got2" "$T/m2"

# Maildir++ folders: -F, FOLDER, FOLDERS, user+tag with -t
clear
ok "-F Work" dl -F Work -f s@example.net alice@example.com <"$T/m1"
is "$(nfiles "$M/alice/.Work/new")" 1 "-F Work: into alice/.Work/new (created)"
ok "folder is marked maildirfolder" test -f "$M/alice/.Work/maildirfolder"
ok "FOLDERS per recipient" env FOLDERS="bob@example.com Lists.Daily" deliver -c "$C" -f s@example.net alice@example.com bob@example.com <"$T/m1"
is "$(nfiles "$M/bob/.Lists.Daily/new") $(nfiles "$M/alice/new")" "1 1" "FOLDERS: bob into .Lists.Daily, alice into INBOX"
clear
ok "FOLDERS with a TAB, a folder name with a space" env FOLDERS="$(printf 'x@example.com\tJunk\nALICE@example.com\tSent Items')" deliver -c "$C" -f s@example.net alice@example.com <"$T/m1"
is "$(nfiles "$M/alice/.Sent Items/new")" 1 "FOLDERS: addr<TAB>Sent Items (as ruleproc writes it)"
ok "bad folder name" dl -F ../../etc -f s@example.net carol@example.com <"$T/m1"
is "$(nfiles "$M/carol/new")" 1 "a bad folder name falls back to INBOX"
ok "-t tag folder missing" dl -t -f s@example.net carol+lists@example.com <"$T/m1"
is "$(nfiles "$M/carol/new")" 2 "-t: user+tag without a .tag folder: INBOX"
ok "carol's .lists does not get created" test ! -d "$M/carol/.lists"
mkdir -p "$M/carol/.lists/new" "$M/carol/.lists/tmp" "$M/carol/.lists/cur"; chmod -R 777 "$M/carol/.lists"
ok "-t tag folder exists" dl -t -f s@example.net carol+lists@example.com <"$T/m1"
is "$(nfiles "$M/carol/.lists/new")" 1 "-t: user+tag into the existing .tag folder"

# old tmp/ leftovers go, fresh ones stay
touch -d '40 hours ago' "$M/alice/tmp/old.1.host"; touch "$M/alice/tmp/fresh.1.host"
ok "delivery with leftovers in tmp/" dl -f s@example.net alice@example.com <"$T/m1"
ok "tmp/ file older than 36 h removed" test ! -e "$M/alice/tmp/old.1.host"
ok "fresh tmp/ file kept" test -e "$M/alice/tmp/fresh.1.host"
