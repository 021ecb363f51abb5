#!/bin/sh
# bench/ruleproc.sh: how fast are the rules? Messages per second through
# `ruleproc -n` with a 500-rule file over real-looking messages of about
# 2 KiB and 64 KiB (multipart, base64 attachment), next to: the same
# without rules (process start), the engine in-process (scan + all 500
# rules, no process), the chain filter in front of `true`, and `deliver`
# into a Maildir with fsync (the pipeline's durable step) as the
# reference, and finally the whole pipeline over SMTP (smtpd-lite with
# relaycheck, ruleproc -p and the chain ruleproc -> deliver) against
# the same pipeline without rules: the figure the 5% target is about.
# Not part of `make test`.
#
#   sh bench/ruleproc.sh            N=300 runs per figure
#   N=1000 sh bench/ruleproc.sh
#   sh bench/ruleproc.sh startup    CPU time (perf stat task-clock) of one
#                                   ruleproc -n start: 500 rules checked in
#                                   full (-R), 500 rules = rules.ok (lazy
#                                   regexes), no rules; less sensitive to a
#                                   loaded machine than the wall-clock figures
#   sh bench/ruleproc.sh rules      print the 500-rule file (for t/)
set -u
case ${1:-} in rules|startup) MODE=$1 ;; *) MODE=bench ;; esac
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${BUILD:-$TOP/build}
BIN=$BUILD/bin
N=${N:-300}
W=$(mktemp -d /tmp/rpbench.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
[ -x "$BIN/ruleproc" ] || { echo "build first: make" >&2; exit 1; }

# ---- 500 rules that mostly do not match (every rule is evaluated) ----
gen_rules() {
	awk 'BEGIN {
	for (i = 0; i < 500; i++) {
		k = i % 10
		printf "rule \"r%d\"\n", i
		if (k == 0) { printf "    sender *@spam%d.example *@bulk%d.example\n    reject 550 5.7.1 \"No mail from you\"\n", i, i }
		else if (k == 1) { printf "    recipient user%d@example.org\n    redirect archive%d@example.org\n", i, i }
		else if (k == 2) { printf "    client 198.51.%d.0/24 2001:db8:%x::/48\n    reject\n", i % 256, i }
		else if (k == 3) { printf "    header Subject \"*special offer %d*\"\n    tag-subject [OFFER]\n    continue\n", i }
		else if (k == 4) { printf "    match any\n    header X-Mailer \"*massmailer %d*\"\n    header List-Id \"*promo%d*\"\n    folder Promo\n", i, i }
		else if (k == 5) { printf "    body \"*unsubscribe code %d*\"\n    folder Junk\n", i }
		else if (k == 6) { printf "    body /(lottery|jackpot)-%d +winner/\n    reject 550 5.7.1 \"Scam\"\n", i }
		else if (k == 7) { printf "    attachment *.scr%d *.pif%d\n    reject\n", i, i }
		else if (k == 8) { printf "    helo *.dialup%d.example\n    not authenticated\n    tempfail\n", i }
		else { printf "    size > %dM\n    sender *@news%d.example\n    discard\n", 30 + i % 10, i }
	}
	print "rule \"Mark\"\n    add-header X-Rules checked\n    continue"
}'
}
[ $MODE = rules ] && { gen_rules; exit 0; }
gen_rules >"$W/rules500"
: >"$W/rules0"
"$BIN/ruleproc" -t -R "$W/rules500" >/dev/null 2>&1 || { echo "generated rules do not parse" >&2; exit 1; }


# ---- messages ----
awk -v dir="$W" 'BEGIN {
	srand(42)
	split("the of and to in is that it for on with as was at by this have from or an be are not mail message server please meeting report project monday attached thanks regards invoice order team update schedule review", w, " ")
	nw = 36
	b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for (m = 0; m < 20; m++) {
		for (big = 0; big < 2; big++) {
			f = dir "/" (big ? "m64k_" : "m2k_") m
			printf "Received: from mail%d.example.net (mail%d.example.net [203.0.113.%d])\n\tby mx.example.com with ESMTP id %dABC; Mon, 30 Nov 2026 10:%02d:00 +0000\n", m, m, m, m, m > f
			printf "Received: from [10.0.0.%d] by mail%d.example.net; Mon, 30 Nov 2026 10:%02d:00 +0000\n", m, m, m > f
			printf "From: \"Sender %d\" <sender%d@example.net>\nTo: alice@example.com\nCc: bob@example.com\n", m, m > f
			printf "Subject: Re: project update %d for the weekly meeting\nDate: Mon, 30 Nov 2026 10:%02d:00 +0000\n", m, m > f
			printf "Message-ID: <%d.%d@mail.example.net>\nMIME-Version: 1.0\nX-Mailer: Thunderbird 115\n", m, big > f
			if (big) printf "Content-Type: multipart/mixed; boundary=\"=_b%d\"\n\n--=_b%d\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n", m, m > f
			else printf "Content-Type: text/plain; charset=utf-8\n\n" > f
			n = 0
			while (n < 1500) { line = ""; while (length(line) < 66) line = line w[int(rand() * nw) + 1] " "; print line > f; n += length(line) + 1 }
			if (big) {
				printf "\n--=_b%d\nContent-Type: application/pdf; name=\"report%d.pdf\"\nContent-Disposition: attachment; filename=\"report%d.pdf\"\nContent-Transfer-Encoding: base64\n\n", m, m, m > f
				for (l = 0; l < 800; l++) { line = ""; for (c = 0; c < 76; c++) line = line substr(b64, int(rand() * 64) + 1, 1); print line > f }
				printf "--=_b%d--\n", m > f
			}
			close(f)
		}
	}
}'
s2=$(cat "$W"/m2k_* | wc -c); s64=$(cat "$W"/m64k_* | wc -c)

if [ $MODE = startup ]; then
	command -v perf >/dev/null || { echo "startup needs perf (linux-perf)" >&2; exit 1; }
	R=${R:-500}
	mkdir -p "$W/sc" && : >"$W/sc/settings" && cp "$W/rules500" "$W/sc/rules"
	"$BIN/ruleproc" -t -c "$W/sc" >/dev/null 2>&1	# rules.ok = rules
	cpu() { # ARGS: median over 3 rounds of the task-clock ms of one run (perf stat -r R)
		for k in 1 2 3; do
			perf stat -r "$R" -x, -e task-clock "$BIN/ruleproc" -n -q "$@" -f s@example.net -r a@example.com \
			    -i 203.0.113.5 -H mail.example.net </dev/null 2>&1 >/dev/null | awk -F, '/task-clock/ { print $1 }'
		done | sort -n | sed -n 2p
	}
	echo "ruleproc -n start-up CPU time (perf stat -r $R -e task-clock, median of 3), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
	a=$(cpu -R "$W/rules0"); b=$(cpu -c "$W/sc"); c=$(cpu -R "$W/rules500")
	printf '  %-52s %7.3f ms\n' "no rules (-R empty file)" "$a" "500 rules = rules.ok (-c CONFDIR: regexes lazy)" "$b" \
	    "500 rules checked in full (-R FILE: every regcomp)" "$c"
	awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { printf "  cost of the 500 rules per process: %.3f ms lazy, %.3f ms full\n", b - a, c - a }'
	if command -v valgrind >/dev/null; then	# instructions: the same on a loaded machine
		ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN/ruleproc" -n -q "$@" -f s@example.net \
		    -r a@example.com -i 203.0.113.5 -H mail.example.net <"$W/m2k_0" 2>&1 >/dev/null | sed -n 's/.*refs: *//p' | tr -d ,; }
		a=$(ir -R "$W/rules0"); b=$(ir -c "$W/sc"); c=$(ir -R "$W/rules500")
		echo "instructions executed by one ruleproc -n (valgrind --tool=callgrind, a 2 KiB message):"
		printf '  %-52s %9d\n' "no rules (-R empty file)" "$a" "500 rules = rules.ok (-c CONFDIR: regexes lazy)" "$b" \
		    "500 rules checked in full (-R FILE: every regcomp)" "$c"
	fi
	exit 0
fi

now() { date +%s.%N; }
rate() { # label seconds count
	awk -v l="$1" -v t="$2" -v n="$3" 'BEGIN { printf "  %-58s %8.0f msg/s  %7.3f ms/msg\n", l, n / t, 1000 * t / n }'
}
per() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.6f", t / n }'; }
run_dry() { # rules prefix -> seconds for N messages
	t0=$(now); i=0
	while [ $i -lt "$N" ]; do
		"$BIN/ruleproc" -n -q -R "$1" -f sender@example.net -r alice@example.com -r bob@example.com -i 203.0.113.5 -H mail.example.net \
		    <"$W/${2}_$((i % 20))" >/dev/null
		i=$((i + 1))
	done
	awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }'
}
run_dry_conf() { # confdir prefix: CONFDIR/rules, the way the chain and -p read it
	t0=$(now); i=0
	while [ $i -lt "$N" ]; do
		"$BIN/ruleproc" -n -q -c "$1" -f sender@example.net -r alice@example.com -r bob@example.com -i 203.0.113.5 -H mail.example.net \
		    <"$W/${2}_$((i % 20))" >/dev/null
		i=$((i + 1))
	done
	awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }'
}

# ---- in-process engine: scan + run all rules, no process start ----
cat >"$W/eval.c" <<'EOF'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "rules.h"
int main(int argc, char **argv) {
	struct ruleset rs; char err[600]; int reps = atoi(argv[2]), i, k; struct timespec a, b;
	static char buf[20][200000]; size_t len[20];
	char *rc[] = { "alice@example.com", "bob@example.com" };
	if (rules_parse_file(&rs, argv[1], err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
	for (k = 0; k < 20; k++) { char p[4200]; int fd; snprintf(p, sizeof p, "%s_%d", argv[3], k);
		fd = open(p, O_RDONLY); len[k] = (size_t)read(fd, buf[k], sizeof buf[k]); close(fd); }
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (i = 0; i < reps; i++) {
		struct rmsg m; struct rresult r; struct renv e;
		rmsg_init(&m, rs.body_limit); rmsg_feed(&m, buf[i % 20], len[i % 20]); rmsg_end(&m);
		memset(&e, 0, sizeof e); e.sender = "sender@example.net"; e.rcpts = rc; e.nrcpt = 2;
		e.client = "203.0.113.5"; e.helo = "mail.example.net"; e.msg = &m;
		rules_run(&rs, &e, ST_DATA, &r, NULL); rresult_free(&r); rmsg_free(&m);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
EOF
cc -O2 -std=c11 -D_GNU_SOURCE -I"$TOP/lib" $(pkg-config --cflags libbsd-overlay) -o "$W/eval" "$W/eval.c" "$BUILD/libmx.a" \
    $(pkg-config --libs libbsd-overlay libcdb) 2>/dev/null || { echo "cannot build the in-process bench" >&2; exit 1; }

# ---- deliver reference: a private conf and Maildirs ----
mkdir -p "$W/conf" "$W/mail" "$W/spool"
cp "$TOP"/conf/settings "$TOP"/conf/domains "$TOP"/conf/mailboxes "$TOP"/conf/access "$TOP"/conf/backup "$W/conf/" 2>/dev/null
sed -i -e "s|^mailroot .*|mailroot $W/mail|" -e "s|^queuedir .*|queuedir $W/queue|" -e "s|^spooldir .*|spooldir $W/spool|" "$W/conf/settings"
"$BIN/mkcdb" -c "$W/conf" >/dev/null 2>&1
cp "$W/rules500" "$W/conf/rules"
"$BIN/ruleproc" -t -c "$W/conf" >/dev/null 2>&1	# installs rules.ok (identical: known good)
chmod -R a+rX "$W/conf"
chmod 777 "$W/mail" "$W/spool"	# deliver runs as the settings user when started as root

echo "ruleproc bench: $N messages per figure, 500 rules ($(wc -l <"$W/rules500") lines), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
for sz in 2k 64k; do
	[ $sz = 2k ] && avg=$((s2 / 20)) || avg=$((s64 / 20))
	echo "messages ~$sz (average $avg bytes):"
	t500=$(run_dry "$W/rules500" "m$sz"); rate "ruleproc -n -R, 500 rules (full check: every regcomp)" "$t500" "$N"
	tok=$(run_dry_conf "$W/conf" "m$sz"); rate "ruleproc -n -c, 500 rules = rules.ok (regexes lazy)" "$tok" "$N"
	t0=$(run_dry "$W/rules0" "m$sz"); rate "ruleproc -n, no rules (process start, scan)" "$t0" "$N"
	reps=$((N * 20))
	te=$("$W/eval" "$W/rules500" "$reps" "$W/m$sz"); rate "engine in-process: scan + 500 rules" "$te" "$reps"
	t0c=$(now); i=0
	while [ $i -lt "$N" ]; do
		SENDER=sender@example.net RECIPIENTS=alice@example.com TCPREMOTEIP=203.0.113.5 "$BIN/ruleproc" -c "$W/conf" true <"$W/m${sz}_$((i % 20))" 2>/dev/null
		i=$((i + 1))
	done
	tc=$(awk -v a="$t0c" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }'); rate "chain: ruleproc (500 rules, header added) -> true" "$tc" "$N"
	t0d=$(now); i=0
	while [ $i -lt "$N" ]; do
		SENDER=sender@example.net RECIPIENTS=alice@example.com "$BIN/deliver" -c "$W/conf" <"$W/m${sz}_$((i % 20))" >/dev/null 2>&1 ||
			{ echo "deliver failed" >&2; exit 1; }
		i=$((i + 1))
	done
	td=$(awk -v a="$t0d" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }'); rate "deliver into a Maildir (fsync), the reference" "$td" "$N"
	awk -v e="$(per "$te" "$reps")" -v r="$(per "$t500" "$N")" -v z="$(per "$t0" "$N")" -v d="$(per "$td" "$N")" -v c="$(per "$tc" "$N")" -v k="$(per "$tok" "$N")" 'BEGIN {
		printf "  rule evaluation (in-process) / (chain filter + deliver): %.2f%%\n", 100 * e / (c + d)
		printf "  parsing + evaluating 500 rules in a new process, (dry 500 - dry 0) / (chain + deliver): %.2f%%\n", 100 * (r - z) / (c + d)
		printf "  the same, rules = rules.ok (as the chain and -p run), (dry -c 500 - dry 0) / (chain + deliver): %.2f%%\n", 100 * (k - z) / (c + d)
	}'
done

# ---- the whole pipeline over SMTP: without rules, then with the 500 ----
if ! command -v python3 >/dev/null || [ ! -x "$BIN/smtpd-lite" ]; then
	echo "(no python3 or smtpd-lite: pipeline figures skipped)"; exit 0
fi
chmod -R a+rX "$W/conf"
chmod 777 "$W/mail" "$W/spool"
mkdir -p "$W/queue" && chmod 777 "$W/queue"
sed -i -e "s|^queuedir .*|queuedir $W/queue|" "$W/conf/settings"
grep -q '^bindir' "$W/conf/settings" || echo "bindir $BIN" >>"$W/conf/settings"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pipeline() { # label: N messages, one SMTP connection each
	"$BIN/smtpd-lite" -q -c "$W/conf" -l "127.0.0.1:$port" 2>"$W/smtpd.log" &
	spid=$!
	python3 - "$port" "$N" "$W/m2k_0" "$1" <<'PY'
import smtplib, socket, sys, time
port, n, msgfile, label = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
for i in range(50):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close(); break
    except OSError:
        time.sleep(0.1)
msg = open(msgfile, "rb").read().replace(b"\n", b"\r\n")
t = time.time(); bad = 0
for i in range(n):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("client.example.net")
    try:
        s.sendmail("sender@example.net", ["alice@example.com"], msg)
    except smtplib.SMTPException:
        bad += 1
    s.quit()
dt = time.time() - t
print("  %-58s %8.0f msg/s  %7.3f ms/msg%s" % (label, n / dt, 1000 * dt / n, "  (%d refused!)" % bad if bad else ""))
print("T %.6f" % (dt / n))
PY
	kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
}
echo "whole pipeline over SMTP (smtpd-lite, relaycheck, fsync'd spool, deliver; ~2k messages):"
rm -f "$W/conf/rules" "$W/conf/rules.ok"
sed -i '/^chain /d' "$W/conf/settings"
echo "chain $BIN/deliver -c $W/conf" >>"$W/conf/settings"
pipeline "without rules" >"$W/p0"; grep -v '^T ' "$W/p0"; p0=$(sed -n 's/^T //p' "$W/p0")
sed -i '/^chain /d' "$W/conf/settings"
echo "chain $BIN/ruleproc -c $W/conf $BIN/deliver -c $W/conf" >>"$W/conf/settings"
# one rule that never matches: what the two extra ruleproc processes
# (-p per connection, the chain filter per message) cost by themselves
printf 'rule "none"\n    sender nobody@nowhere.invalid\n    reject\n' >"$W/conf/rules"
pipeline "with 1 rule (the ruleproc processes alone)" >"$W/p2"; grep -v '^T ' "$W/p2"; p2=$(sed -n 's/^T //p' "$W/p2")
cp "$W/rules500" "$W/conf/rules"
pipeline "with 500 rules (ruleproc -p and ruleproc in the chain)" >"$W/p1"; grep -v '^T ' "$W/p1"; p1=$(sed -n 's/^T //p' "$W/p1")
awk -v a="$p2" -v b="$p1" 'BEGIN { if (b > 0) printf "  the 500 rules themselves (500 rules - 1 rule) / (500 rules): %.1f%%\n", 100 * (b - a) / b }'
awk -v a="$p0" -v b="$p1" 'BEGIN { if (b > 0) printf "  rules share of the per-message time: %.1f%% (each ruleproc process parses the 500 rules; regexes compiled when first needed unless rules differs from rules.ok)\n", 100 * (b - a) / b }'
