#!/bin/sh
# make-run.sh BUILD PORT: `make run`. Compiles the sample conf/, makes the
# mail root, queue and spool under run/ (ignored by git; the sample
# settings point there), and starts smtpd-lite's own listener on
# 127.0.0.1:PORT in the foreground. Ctrl-C stops it.
# Without arguments (as t/run calls every t/*.sh) it tests itself: the
# same steps on a copy of conf/ in a temporary directory and a free port,
# then it runs the printed swaks and python3 lines and checks that the
# messages land where it said.
set -u
if [ $# -eq 0 ]; then
	. "$(dirname "$0")/lib.sh"
	mkdir -p "$T/conf"
	cp "$TOP"/conf/settings "$TOP"/conf/access "$TOP"/conf/domains "$TOP"/conf/backup \
	    "$TOP"/conf/mailboxes "$T/conf/"
	for f in rules routes; do [ -f "$TOP/conf/$f" ] && cp "$TOP/conf/$f" "$T/conf/"; done
	chmod -R a+rX "$T/conf"
	port=$(free_port)
	MXRUN_CONF=$T/conf sh "$TOP/t/make-run.sh" "$BUILD" "$port" >"$T/out" 2>&1 &
	bg_pid $!
	if ! wait_port 127.0.0.1 "$port"; then
		echo "not ok - make run: the listener starts"; sed 's/^/#   /' "$T/out"; exit 1
	fi
	echo "ok - make run: smtpd-lite listens on the port given"
	ok "make run: compiled the sample tables" test -f "$T/conf/mailboxes.cdb" -a -f "$T/conf/domains.cdb"
	ok "make run: made the mail root ../run/mail next to conf" test -d "$T/run/mail"
	if [ "$(id -u)" = 0 ]; then
		is "$(stat -c %U "$T/run/mail")" nobody "make run as root: run/ belongs to the settings user"
	fi
	py=$(sed -n 's/^ *\(python3 -c .*\)$/\1/p' "$T/out")
	like "$py" "^python3 -c" "make run prints a python3 one-liner"
	ok "the printed python3 line sends a message" sh -c "$py"
	where=$(sed -n 's/^ *It arrives in \([^ ]*\).*/\1/p' "$T/out")
	is "$where" "$T/run/mail/alice/new/" "make run says where it lands"
	n=$(ls "$where" 2>/dev/null | wc -l | tr -d ' ')
	is "$n" 1 "the message landed there"
	sw=$(sed -n 's/^ *\(swaks --server .*\)$/\1/p' "$T/out")
	like "$sw" "^swaks --server 127.0.0.1:$port " "make run prints a swaks line"
	if command -v swaks >/dev/null; then
		ok "the printed swaks line sends a message" sh -c "$sw"
		is "$(ls "$where" | wc -l | tr -d ' ')" 2 "the swaks message landed there too"
	fi
	if [ -x "$BIN/ruleproc" ] && [ -f "$TOP/conf/rules" ]; then
		like "$(grep 'chain:' "$T/out")" 'ruleproc -> deliver' "make run: the chain is ruleproc -> deliver"
		python3 -c 'import smtplib,sys; s = smtplib.SMTP("127.0.0.1", int(sys.argv[1])); s.sendmail("you@example.net", ["alice@example.com"], "Subject: [SPAM] cheap\r\n\r\nx\r\n"); s.quit()' "$port"
		is "$(ls "$T/run/mail/alice/.Junk/new" 2>/dev/null | wc -l | tr -d ' ')" 1 "make run: ruleproc's folder rule files [SPAM] into alice/.Junk"
	fi
	exit 0
fi
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
port=${2:-2525}
case $build in /*) ;; *) build=$top/$build ;; esac
bin=$build/bin
conf=${MXRUN_CONF:-$top/conf}	# the test above uses a copy

for p in mkcdb smtpd-lite deliver relaycheck; do
	if [ ! -x "$bin/$p" ]; then
		echo "make run: $bin/$p is missing; run make first" >&2
		exit 1
	fi
done

# the tables (conf/*.cdb are ignored by git)
"$bin/mkcdb" -c "$conf" || { echo "make run: mkcdb failed; fix conf/ first" >&2; exit 1; }

# where the sample settings put mail, relative to conf/
setting() { sed -n "s/^$1[[:space:]][[:space:]]*\([^[:space:]#]*\).*/\1/p" "$conf/settings" | tail -n 1; }
abspath() { case $1 in /*) echo "$1" ;; *) echo "$conf/$1" ;; esac; }
mailroot=$(abspath "$(setting mailroot)")
queuedir=$(abspath "$(setting queuedir)")
spooldir=$(abspath "$(setting spooldir)")
user=$(setting user); user=${user:-nobody}
mkdir -p "$mailroot" "$queuedir" "$spooldir" || exit 1
mailroot=$(cd "$mailroot" && pwd) queuedir=$(cd "$queuedir" && pwd) spooldir=$(cd "$spooldir" && pwd)

# smtpd-lite drops root privileges to the settings user: let it write
if [ "$(id -u)" = 0 ]; then
	group=$(id -gn "$user" 2>/dev/null) || { echo "make run: user $user (settings) does not exist" >&2; exit 1; }
	chown -R "$user:$group" "$mailroot" "$queuedir" "$spooldir"
	chmod 0750 "$mailroot" "$queuedir" "$spooldir"
	# ... and read the configuration and reach run/
	if ! su -s /bin/sh -c "test -r '$conf/settings' -a -x '$mailroot'" "$user" 2>/dev/null; then
		echo "make run: warning: user $user cannot reach $conf or $mailroot" >&2
		echo "  (the working tree's parent directories must be searchable: chmod o+x)" >&2
	fi
fi

# the chain after DATA, as smtpd-lite chooses it: ruleproc (when
# conf/rules exists) then deliver, unless the settings name a chain
chain=deliver
if ! grep -q '^chain[[:space:]]' "$conf/settings" && [ -f "$conf/rules" ]; then
	chain="ruleproc -> deliver"
fi
set --

domain=example.com
cat <<EOF

  mx: smtpd-lite listening on 127.0.0.1:$port  (conf: $conf)
  chain: relaycheck (policy) -> $chain; mail lands under $mailroot

  Send a test message:
    swaks --server 127.0.0.1:$port --from you@example.net --to alice@$domain

    python3 -c 'import smtplib; s = smtplib.SMTP("127.0.0.1", $port); s.sendmail("you@example.net", ["alice@$domain"], "Subject: hello\\n\\nIt works.\\n"); s.quit()'

  It arrives in $mailroot/alice/new/
  (sales@$domain reaches alice and bob; anything@example.org the catch-all;
   dave@$domain is forwarded into the queue: $queuedir;
   with ruleproc, a Subject containing [SPAM] goes to alice/.Junk/)

  Ctrl-C stops the server.

EOF
exec "$bin/smtpd-lite" -c "$conf" -l "127.0.0.1:$port" "$@"
