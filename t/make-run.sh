#!/bin/sh
# make-run.sh BUILD PORT: `make run`. Compiles the sample conf/, makes the
# mail root, queue and spool under run/ (ignored by git; the sample
# settings point there), and starts smtpd-lite's own listener on
# 127.0.0.1:PORT in the foreground. Ctrl-C stops it.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
port=${2:-2525}
case $build in /*) ;; *) build=$top/$build ;; esac
bin=$build/bin
conf=$top/conf

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

domain=example.com
cat <<EOF

  mx: smtpd-lite listening on 127.0.0.1:$port  (conf: $conf)
  chain: relaycheck (policy) -> deliver; mail lands under $mailroot

  Send a test message:
    swaks --server 127.0.0.1:$port --from you@example.net --to alice@$domain

    python3 -c 'import smtplib; s = smtplib.SMTP("127.0.0.1", $port); s.sendmail("you@example.net", ["alice@$domain"], "Subject: hello\\n\\nIt works.\\n"); s.quit()'

  It arrives in $mailroot/alice/new/
  (sales@$domain reaches alice and bob; anything@example.org the catch-all;
   dave@$domain is forwarded into the queue: $queuedir)

  Ctrl-C stops the server.

EOF
exec "$bin/smtpd-lite" -c "$conf" -l "127.0.0.1:$port"
