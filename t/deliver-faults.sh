# deliver: addresses never become paths; missing Maildirs; SIGKILL
# mid-delivery leaves nothing partial in new/; a full filesystem is a
# temporary failure that loses nothing.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
M=$T/mail
dl() { deliver -c "$C" "$@"; }
nfiles() { find "$1" -type f 2>/dev/null | wc -l | tr -d ' '; }
printf 'Subject: f\n\nbody\n' >"$T/m1"

# hostile local parts: never a path
for a in '../../etc/passwd@example.com' 'a/b@example.com' '.alice@example.com' \
    '"../x"@example.com' 'alice/../bob@example.com'; do
	dl -f s@example.net "$a" <"$T/m1" 2>/dev/null; rc=$?
	is "$rc" 100 "hostile recipient $a: permanent failure"
done
ok "catch-all with ../ in a quoted local part" dl -f s@example.net '"../../x"@example.org' <"$T/m1"
is "$(nfiles "$M/catchall/new")" 1 "...lands in the catch-all's table path"
is "$(find "$T" -path "$T/mail" -prune -o -newer "$T/m1" -type f -print | grep -v -e '/conf/' -e '/\.last$' -e '/err$' | wc -l | tr -d ' ')" 0 "nothing written outside the mail root"
# an unsafe path in a hand-made table is refused, not followed
cdb -c -m "$T/evil.cdb" <<'EOF'
evil@example.com 1 ../escape/
EOF
cp "$C/mailboxes.cdb" "$T/mb.save"; cp "$T/evil.cdb" "$C/mailboxes.cdb"
dl -f s@example.net evil@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 111 "table path with ..: temporary failure (configuration error)"
ok "...and nothing outside the mail root" test ! -e "$T/escape"
cp "$T/mb.save" "$C/mailboxes.cdb"

# a listed mailbox without a Maildir
rm -rf "$M"/*
sed -i 's/^create_maildirs .*/create_maildirs no/' "$C/settings"
dl -f s@example.net alice@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 111 "create_maildirs no, Maildir missing: exit 111"
like "$(tail -n 1 "$T/err")" '^4\.2\.0 .*alice' "reason names the Maildir"
sed -i 's/^create_maildirs .*/create_maildirs yes/' "$C/settings"
ok "create_maildirs yes" dl -f s@example.net alice@example.com <"$T/m1"
ok "Maildir created with tmp, new, cur" test -d "$M/alice/tmp" -a -d "$M/alice/new" -a -d "$M/alice/cur"
sed -i "s|^mailroot .*|mailroot $T/nonexistent|" "$C/settings"
dl -f s@example.net alice@example.com <"$T/m1" 2>"$T/err"; rc=$?
is "$rc" 111 "mail root missing: exit 111"
sed -i "s|^mailroot .*|mailroot $M|" "$C/settings"

# SIGKILL at points during a delivery of a large message: whatever is in
# new/ is complete; the rest is at most a tmp/ leftover
head -c 30000000 /dev/urandom | base64 >"$T/big.body"
{ printf 'Subject: big\n\n'; cat "$T/big.body"; } >"$T/big"
want=$(( $(stat -c %s "$T/big") + $(printf 'Return-Path: <s@example.net>\nDelivered-To: alice@example.com\n' | wc -c) ))
rm -rf "$M"/*
bad=0 n=0
for d in 0.005 0.02 0.05 0.1 0.15 0.2 0.3 0.5; do
	dl -f s@example.net alice@example.com <"$T/big" 2>/dev/null &
	p=$!
	sleep $d
	kill -9 $p 2>/dev/null
	wait $p 2>/dev/null
done
for f in "$M"/alice/new/*; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	[ "$(stat -c %s "$f")" = "$want" ] || bad=$((bad + 1))
done
is "$bad" 0 "SIGKILL at 8 points: no partial file in new/ ($n complete ones)"
# the same through a pipe (the copy to tmp/ is killed)
rm -rf "$M"/*
mkfifo "$T/fifo"
dl -f s@example.net alice@example.com <"$T/fifo" 2>/dev/null &
p=$!
( cat "$T/big"; sleep 3 ) >"$T/fifo" &
w=$!
sleep 0.5
kill -9 $p 2>/dev/null
wait $p 2>/dev/null
kill $w 2>/dev/null; wait $w 2>/dev/null
is "$(nfiles "$M/alice/new")" 0 "SIGKILL while reading a pipe: nothing in new/"

# a full filesystem (root only: a small tmpfs)
if [ "$(id -u)" = 0 ] && mkdir -p "$T/small" && mount -t tmpfs -o size=2m,mode=0777 tmpfs "$T/small" 2>/dev/null; then
	trap 'umount "$T/small" 2>/dev/null; cleanup' EXIT
	sed -i "s|^mailroot .*|mailroot $T/small/mail|;s|^queuedir .*|queuedir $T/small/queue|" "$C/settings"
	mkdir -p "$T/small/mail"; chmod 777 "$T/small/mail"
	head -c 3000000 /dev/zero | tr '\0' 'x' | fold -w 70 >"$T/toobig"
	dl -f s@example.net alice@example.com bob@example.com <"$T/toobig" 2>"$T/err"; rc=$?
	is "$rc" 111 "filesystem full: exit 111"
	like "$(tail -n 1 "$T/err")" '^4\.2\.2 ' "filesystem full: 4.2.2 (mailbox full)"
	is "$(nfiles "$T/small/mail/alice/new")$(nfiles "$T/small/mail/bob/new")" "00" "filesystem full: nothing in new/"
	is "$(nfiles "$T/small/mail/alice/tmp")" 0 "filesystem full: tmp/ cleaned up"
	ok "a small message still fits afterwards" dl -f s@example.net alice@example.com <"$T/m1"
	# a pipe that cannot even be copied
	cat "$T/toobig" | dl -f s@example.net alice@example.com 2>"$T/err"; rc=$?
	is "$rc" 111 "filesystem full while copying a pipe: exit 111"
	umount "$T/small"
else
	skip "full filesystem test needs root and tmpfs"
fi

# the disk fails the fsync that makes a file's links durable (a shim
# fails fsync of a regular file that already has a name): 4xx, and the
# names already made in new/ are taken back
cat >"$T/failsync.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/stat.h>
int
fsync(int fd)
{
	struct stat st;
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 0) {
		errno = EIO;
		return -1;
	}
	return real(fd);
}
EOF
sed -i -e "s|^mailroot .*|mailroot $M|" -e "s|^queuedir .*|queuedir $T/queue|" "$C/settings"
if cc -shared -fPIC -o "$T/failsync.so" "$T/failsync.c" -ldl 2>"$T/cc.err"; then
	rm -rf "$M/alice" "$M/bob"
	# (under AddressSanitizer the shim is not its first library: allowed)
	LD_PRELOAD=$T/failsync.so ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" dl -f s@example.net alice@example.com bob@example.com <"$T/m1" 2>"$T/err"; rc=$?
	if grep -q 'cannot fsync the message' "$T/err"; then
		is "$rc" 111 "fsync after the links fails: exit 111"
		like "$(tail -n 1 "$T/err")" '^4\.3\.0 ' "... 4.3.0"
		is "$(nfiles "$M/alice/new")$(nfiles "$M/bob/new")" "00" "... the links in new/ taken back"
		is "$(nfiles "$M/alice/tmp")" 0 "... nothing left in tmp/"
	elif grep -q 'cannot write to' "$T/err"; then
		skip "no unnamed files here (the first fsync failed): the fsync after the links"
	else
		ok "fsync after the links fails: reported (rc $rc)" false
		sed 's/^/#   /' "$T/err"
	fi
else
	skip "no C compiler for the fsync shim"
fi

# unprivileged: started as nobody it works the same; as root it becomes
# the settings user, and refuses to deliver as root
sed -i -e "s|^mailroot .*|mailroot $M|" -e "s|^queuedir .*|queuedir $T/queue|" "$C/settings"
if [ "$(id -u)" = 0 ]; then
	rm -rf "$M"/*
	chmod -R a+rX "$C"
	ok "started as nobody" su -s /bin/sh nobody -c "'$BIN/deliver' -c '$C' -f s@example.net alice@example.com <'$T/m1'"
	is "$(stat -c %U "$M"/alice/new/* 2>/dev/null)" nobody "nobody's delivery is nobody's file"
	sed -i 's/^user .*/user no-such-user-here/' "$C/settings"
	dl -f s@example.net alice@example.com <"$T/m1" 2>"$T/err"; rc=$?
	is "$rc" 111 "as root with an unknown settings user: exit 111 (never delivers as root)"
	sed -i 's/^user .*/user root/' "$C/settings"
	dl -f s@example.net alice@example.com <"$T/m1" 2>"$T/err"; rc=$?
	is "$rc" 111 "as root with user root in settings: exit 111"
	sed -i 's/^user .*/user nobody/' "$C/settings"
else
	ok "unprivileged delivery" dl -f s@example.net alice@example.com <"$T/m1"
fi

# a symbolic link for new/ is not followed
rm -rf "$M"/*
mkdir -p "$M/alice/tmp" "$M/alice/cur" "$T/elsewhere"; chmod 777 "$T/elsewhere"
ln -s "$T/elsewhere" "$M/alice/new"
dl -f s@example.net alice@example.com <"$T/m1" 2>/dev/null; rc=$?
is "$rc/$(nfiles "$T/elsewhere")" "111/0" "new/ as a symlink: refused (111), nothing written through it"
rm -f "$M/alice/new"

# an empty message still gets our two header lines, nothing else
rm -rf "$M"/*
: | dl -f s@example.net alice@example.com
is "$(cat "$M"/alice/new/*)" "Return-Path: <s@example.net>
Delivered-To: alice@example.com" "an empty message: just Return-Path and Delivered-To"

# SIGKILL while queueing (a forward of a large message): every entry
# that exists (info/ID) has its whole message file
rm -rf "$T/queue"/*
for d in 0.01 0.04 0.07 0.09 0.11 0.13 0.16 0.3; do
	dl -f s@example.net dave@example.com <"$T/big" 2>/dev/null &
	p=$!
	sleep $d
	kill -9 $p 2>/dev/null
	wait $p 2>/dev/null
done
bad=0 n=0
for i in "$T"/queue/info/*; do
	[ -f "$i" ] || continue
	n=$((n + 1))
	id=$(basename "$i")
	[ "$(tail -n 1 "$i")" = end ] || bad=$((bad + 1))
	[ "$(stat -c %s "$T/queue/mess/$id" 2>/dev/null)" = "$(stat -c %s "$T/big")" ] || bad=$((bad + 1))
done
is "$bad" 0 "SIGKILL at 8 points while queueing: every entry complete ($n entries)"
