# t/lib.sh: helpers for shell tests; source it first.
#   ok "what" CMD...     run CMD; "ok - what" if it exits 0
#   nok "what" CMD...    "ok" if CMD exits non-zero
#   is "got" "want" "what"
#   like "got" "regex" "what"   (grep -E)
#   skip "why"
#   newconf             copies conf/ to $T/conf with paths under $T
#   free_port           prints a free TCP port on 127.0.0.1
#   wait_port HOST PORT wait until something listens (5 s)
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${BUILD:-$TOP/build}
BIN=$BUILD/bin
PATH=$BIN:$PATH
export PATH BIN TOP BUILD
T=$(mktemp -d /tmp/mxtest.XXXXXX)
chmod 755 "$T"
_pids=""
cleanup() {
	for p in $_pids; do kill "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
bg_pid() { _pids="$_pids $1"; }	# remember a server pid to kill at exit

ok() { d=$1; shift; if "$@" >"$T/.last" 2>&1; then echo "ok - $d"; else echo "not ok - $d"; sed 's/^/#   /' "$T/.last" | head -20; fi; }
nok() { d=$1; shift; if "$@" >"$T/.last" 2>&1; then echo "not ok - $d (succeeded)"; sed 's/^/#   /' "$T/.last" | head -20; else echo "ok - $d"; fi; }
is() {
	if [ "$1" = "$2" ]; then echo "ok - $3"; else
		echo "not ok - $3"; printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; fi
}
like() {
	if printf '%s\n' "$1" | grep -Eq -- "$2"; then echo "ok - $3"; else
		echo "not ok - $3"; printf '#   got:  %s\n#   want: /%s/\n' "$1" "$2"; fi
}
skip() { echo "skip - $1"; }

newconf() {
	mkdir -p "$T/conf"
	cp "$TOP"/conf/settings "$TOP"/conf/access "$TOP"/conf/domains "$TOP"/conf/backup \
	   "$TOP"/conf/mailboxes "$T/conf/" 2>/dev/null
	for f in rules routes; do [ -f "$TOP/conf/$f" ] && cp "$TOP/conf/$f" "$T/conf/"; done
	sed -i -e "s|^mailroot .*|mailroot $T/mail|" -e "s|^queuedir .*|queuedir $T/queue|" \
	    -e "s|^spooldir .*|spooldir $T/spool|" -e "s|^bindir .*|bindir $BIN|" "$T/conf/settings"
	grep -q '^bindir' "$T/conf/settings" || echo "bindir $BIN" >>"$T/conf/settings"
	mkdir -p "$T/mail" "$T/queue" "$T/spool"
	chmod 777 "$T/mail" "$T/queue" "$T/spool"
	mkcdb -c "$T/conf" >/dev/null
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
	i=0
	while [ $i -lt 50 ]; do
		python3 -c "import socket,sys; socket.create_connection(('$1',$2),0.2).close()" 2>/dev/null && return 0
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
