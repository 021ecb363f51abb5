# bench/opensmtpd.sh: a private OpenSMTPD beside Postfix, for
# bench/pipeline.sh. Source it after t/lib.sh; root only.
#
# Debian's opensmtpd package conflicts with postfix (mail-transport-agent),
# so it is not installed: `apt-get download` + `dpkg -x` into a cache
# root ($OSD_CACHE/root, kept between runs), its shared libraries (they
# do not conflict) installed with apt-get if ldd misses any, its users
# opensmtpd/opensmtpq created if missing (what the package's postinst
# would do). The binary has its paths compiled in (/var/spool/smtpd,
# /var/run/smtpd.sock, the chroot /var/lib/opensmtpd/empty and the
# delivery helpers in /usr/libexec/opensmtpd), so it runs in a private
# mount namespace (unshare -m) where those are bind mounts of private
# directories: nothing outside DIR is written, and the queue goes away
# with DIR. /etc/resolv.conf is bound to a copy with `lookup file bind`:
# its resolver asks DNS before /etc/hosts by default, and a slow DNS
# server stalls every greeting (the client's reverse lookup) by up to 5 s;
# Postfix and glibc read /etc/hosts first.
# Its listen backlog is compiled in: 5. Under smtp-source at C >= 8 the
# accept queue overflows, dropped SYNs come back after 1 s, and a run of
# 300 messages takes 10-30 s instead of 0.5 s: that measures the backlog,
# not the server (ours-tcp gets tcpserver -b 1000 for the same reason).
# So by default a small LD_PRELOAD shim raises listen()'s backlog to
# OSD_BACKLOG (1024); OSD_BACKLOG=0 runs it as shipped.
#
#   osd_fetch               make $OSD_ROOT ready; on failure print the
#                           reason and return 1
#   osd_init DIR PORT MAIL USER write DIR/smtpd.conf: listen on
#                           127.0.0.1:PORT, no TLS, u 2u 3u 4u 5u@bench.test
#                           (a virtual table mapping them to the system
#                           user USER) delivered by maildir into MAIL/<user>;
#                           DIR/backlog.so (the shim) unless OSD_BACKLOG=0
#   unshare -m sh -c "$OSD_NS" sh DIR "$OSD_ROOT"
#                           the server in the foreground (smtpd -d) in its
#                           namespace (start it in the background)
#   osd_version             "OpenSMTPD 6.8.0p2"
OSD_CACHE=${OSD_CACHE:-/var/cache/mxbench-opensmtpd}
OSD_ROOT=$OSD_CACHE/root
OSD_BACKLOG=${OSD_BACKLOG:-1024}

osd_fetch() {
	for p in unshare mount dpkg ldd; do
		command -v $p >/dev/null || { echo "$p not installed"; return 1; }
	done
	unshare -m true 2>/dev/null || { echo "unshare -m not permitted"; return 1; }
	if [ ! -x "$OSD_ROOT/usr/sbin/smtpd" ]; then
		command -v apt-get >/dev/null || { echo "no apt-get"; return 1; }
		rm -rf "$OSD_CACHE/deb" "$OSD_ROOT"
		mkdir -p "$OSD_CACHE/deb" 2>/dev/null || { echo "cannot create $OSD_CACHE"; return 1; }
		chown _apt "$OSD_CACHE/deb" 2>/dev/null
		(cd "$OSD_CACHE/deb" && apt-get download opensmtpd) >"$OSD_CACHE/fetch.log" 2>&1 &&
		    ls "$OSD_CACHE"/deb/opensmtpd_*.deb >/dev/null 2>&1 ||
		    { echo "apt-get download opensmtpd failed (apt-get update first?): $(grep -m1 '^E:' "$OSD_CACHE/fetch.log")"; return 1; }
		dpkg -x "$OSD_CACHE"/deb/opensmtpd_*.deb "$OSD_ROOT.new" && mv "$OSD_ROOT.new" "$OSD_ROOT" ||
		    { rm -rf "$OSD_ROOT.new"; echo "dpkg -x failed"; return 1; }
	fi
	if ldd "$OSD_ROOT/usr/sbin/smtpd" "$OSD_ROOT/usr/libexec/opensmtpd/mail.maildir" 2>/dev/null | grep -q 'not found'; then
		# the library packages of its Depends (they do not conflict)
		libs=$(dpkg-deb -f "$OSD_CACHE"/deb/opensmtpd_*.deb Depends | tr ',|' '\n\n' |
		    sed 's/(.*//; s/ //g' | grep '^lib')
		apt-get install -y --no-install-recommends $libs >"$OSD_CACHE/libs.log" 2>&1
		! ldd "$OSD_ROOT/usr/sbin/smtpd" "$OSD_ROOT/usr/libexec/opensmtpd/mail.maildir" 2>/dev/null | grep -q 'not found' ||
		    { echo "missing libraries: $(ldd "$OSD_ROOT/usr/sbin/smtpd" | awk '/not found/ {printf "%s ", $1}')"; return 1; }
	fi
	for u in opensmtpd opensmtpq; do
		getent group $u >/dev/null || groupadd --system $u || { echo "cannot create group $u"; return 1; }
		id $u >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/opensmtpd/empty \
		    --shell /usr/sbin/nologin -g $u -c "OpenSMTPD (bench)" $u || { echo "cannot create user $u"; return 1; }
	done
	"$OSD_ROOT/usr/sbin/smtpd" -h 2>&1 | grep -q '^version: OpenSMTPD' || { echo "smtpd does not run: $("$OSD_ROOT/usr/sbin/smtpd" -h 2>&1 | head -1)"; return 1; }
	return 0
}

osd_version() { "$OSD_ROOT/usr/sbin/smtpd" -h 2>&1 | sed -n 's/^version: //p'; }

osd_init() {	# DIR PORT MAILBASE UID
	OSD=$1
	mkdir -p "$OSD/spool" "$OSD/run" "$OSD/varlib/opensmtpd/empty" || return 1
	chmod 755 "$OSD" "$OSD/varlib" "$OSD/varlib/opensmtpd"
	chmod 711 "$OSD/spool"
	{ grep -v '^lookup' /etc/resolv.conf 2>/dev/null; echo "lookup file bind"; } >"$OSD/resolv.conf"
	: >"$OSD/virtuals"
	for u in u 2u 3u 4u 5u; do echo "$u@bench.test $4" >>"$OSD/virtuals"; done
	cat >"$OSD/smtpd.conf" <<EOF
# private OpenSMTPD for bench/pipeline.sh (bench/opensmtpd.sh)
listen on 127.0.0.1 port $2
table virtuals file:$OSD/virtuals
action "bench" maildir "$3/%{rcpt.user}" virtual <virtuals>
match from any for domain "bench.test" action "bench"
EOF
	"$OSD_ROOT/usr/sbin/smtpd" -n -f "$OSD/smtpd.conf" >"$OSD/check.log" 2>&1 || { cat "$OSD/check.log"; return 1; }
	rm -f "$OSD/backlog.so"
	[ "$OSD_BACKLOG" -gt 0 ] 2>/dev/null || return 0
	cat >"$OSD/backlog.c" <<'EOF'
/* listen() with a backlog of at least BACKLOG (bench/opensmtpd.sh) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
int
listen(int fd, int backlog)
{
	static int (*real)(int, int);

	if (!real)
		real = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
	return real(fd, backlog < BACKLOG ? BACKLOG : backlog);
}
EOF
	cc -O2 -shared -fPIC -DBACKLOG="$OSD_BACKLOG" -o "$OSD/backlog.so" "$OSD/backlog.c" -ldl ||
	    { echo "cannot build the backlog shim (OSD_BACKLOG=0 runs without it)"; return 1; }
	chmod 644 "$OSD/backlog.so"
}

# the server in its namespace, in the foreground:
#   unshare -m sh -c "$OSD_NS" sh DIR "$OSD_ROOT"
OSD_NS='
	set -e
	rc=$(readlink -f /etc/resolv.conf || :)
	mount --make-rprivate / 2>/dev/null || :
	mount --bind "$1/spool" /var/spool
	mount --bind "$1/run" /run
	mount --bind "$1/varlib" /var/lib
	mount --bind "$2/usr/libexec" /usr/libexec
	case $rc in
	/run/*) mkdir -p "${rc%/*}" && cp "$1/resolv.conf" "$rc" ;;
	?*) [ ! -f "$rc" ] || mount --bind "$1/resolv.conf" "$rc" ;;
	esac
	[ ! -f "$1/backlog.so" ] || export LD_PRELOAD="$1/backlog.so"
	exec "$2/usr/sbin/smtpd" -d -f "$1/smtpd.conf"'
