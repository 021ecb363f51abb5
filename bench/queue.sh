#!/bin/sh
# bench/queue.sh: messages per second relayed from a trusted client
# through the queue to a local smtp-sink, side by side with a private
# Postfix instance relaying to the same sink in the same run; both at
# 10 concurrent deliveries (our queue_workers / queue_per_destination,
# Postfix's destination concurrency), the client at CONC sessions.
#
#   sh bench/queue.sh                 N=2000 messages of SIZE=2000 bytes, CONC=10
#   N=5000 ROUNDS=2 sh bench/queue.sh
#
# End to end: the clock runs from the first message sent by smtp-source
# until the sink has taken the last one (so the figure is the queue's
# delivery rate, not just acceptance). Ours: smtpd-lite -l -> deliver ->
# queue (fsync) -> mxqueue run -f -> SMTP. Postfix: smtpd -> cleanup ->
# queue manager -> smtp (relayhost = the sink). Loopback only, private
# conf, queue and Postfix instance under /tmp; not part of `make test`.
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
export TOP
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/postfix.sh"
N=${N:-2000}
SIZE=${SIZE:-2000}
CONC=${CONC:-10}
ROUNDS=${ROUNDS:-1}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
for p in "$SINK" "$SOURCE" "$BIN/mxqueue" "$BIN/smtpd-lite" "$BIN/deliver"; do
	[ -x "$p" ] || { echo "bench/queue.sh: $p missing (make; apt-get install postfix)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/queue.sh: the private Postfix needs root" >&2; exit 1; }

newconf
C=$T/conf
# NORULES=1: without the sample conf/rules (no ruleproc in the path)
[ -n "${NORULES:-}" ] && rm -f "$C/rules" "$C/rules.ok"
SP=$(free_port)
sed -i 's/^127\.0\.0\.1 .*/127.0.0.1 relay   # bench: the trusted client/' "$C/access"
echo "bench.test [127.0.0.1]:$SP" >"$C/routes"
cat >>"$C/settings" <<EOF
max_connections 1000
max_per_ip 1000
queue_workers 10
queue_per_destination 10
EOF
mkcdb -c "$C" >/dev/null || exit 1
chmod -R a+rX "$C"

# the sink: one file per message
mkdir -p "$T/sink"
chown postfix "$T/sink"
"$SINK" -u postfix -d "$T/sink/%M." -m 1000 "127.0.0.1:$SP" 1024 2>"$T/sink.err" &
bg_pid $!
wait_port 127.0.0.1 "$SP" || { echo "smtp-sink did not start" >&2; exit 1; }

# ours
OP=$(free_port)
smtpd-lite -q -c "$C" -l "127.0.0.1:$OP" 2>"$T/smtpd.log" &
SMTPD=$!
bg_pid $SMTPD
[ -n "${NORUNNER:-}" ] || mxqueue -c "$C" run -f 2>"$T/mxqueue.log" &
RUNNER=$!
bg_pid $RUNNER
wait_port 127.0.0.1 "$OP" || { echo "smtpd-lite did not start" >&2; exit 1; }

# Postfix
PP=$(free_port)
pf_init "$T/pf" "$PP"
pf_conf "relayhost = [127.0.0.1]:$SP"
pf_conf "default_destination_concurrency_limit = 10"
pf_conf "initial_destination_concurrency = 10"
pf_conf "smtp_destination_concurrency_limit = 10"
pf_conf "default_destination_recipient_limit = 50"
pf_conf "smtpd_client_connection_count_limit = 0"
pf_conf "maillog_file = $T/pf/maillog"
trap 'pf_stop; cleanup' EXIT
pf_start || { echo "postfix did not start" >&2; exit 1; }

count() { ls "$T/sink" | wc -l; }
now() { date +%s.%N; }

# run NAME PORT: send N messages, wait until the sink has them all
run() {
	before=$(count)
	want=$((before + N)); [ -n "${NORUNNER:-}" ] && [ "$1" != "postfix 3.7" ] && want=0
	t0=$(now)
	"$SOURCE" -s "$CONC" -m "$N" -l "$SIZE" -f bench@example.com -t "rcpt@bench.test" \
	    "127.0.0.1:$2" >"$T/source.out" 2>&1 || { echo "$1: smtp-source failed"; cat "$T/source.out"; return 1; }
	t1=$(now)
	i=0
	while [ "$(count)" -lt "$want" ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i + 1)); done
	t2=$(now)
	got=$(( $(count) - before ))
	awk -v n="$N" -v got="$got" -v a="$t0" -v b="$t1" -v c="$t2" -v name="$1" 'BEGIN {
		printf "%-22s %6d sent %6d arrived  accept %6.2f s (%6.0f msg/s)  end to end %6.2f s: %6.0f msg/s\n",
		    name, n, got, b - a, n / (b - a), c - a, got / (c - a) }'
}

echo "== $N messages of $SIZE bytes, $CONC client sessions, 10 concurrent deliveries, one sink"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
r=1
while [ $r -le "$ROUNDS" ]; do
	run "mx (smtpd-lite+queue)" "$OP"
	run "postfix 3.7" "$PP"
	r=$((r + 1))
done
# Delivery only (the queue runner's part): N messages wait in the
# queue, then delivery starts and the clock runs until the sink has them.
# Ours: the runner is stopped while deliver queues them. Postfix: they
# arrive by SMTP on hold (smtpd_end_of_data_restrictions static:HOLD),
# then postsuper -H and postqueue -f.
waitsink() {	# waitsink WANT: until the sink has WANT files (5 min at most)
	i=0
	while [ "$(count)" -lt "$1" ] && [ $i -lt 6000 ]; do sleep 0.02; i=$((i + 1)); done
}
report() {	# report NAME ARRIVED T0 T1 QUEUED
	awk -v n="$5" -v got="$2" -v a="$3" -v c="$4" -v name="$1" 'BEGIN {
		printf "%-22s %6d queued %6d arrived  delivery only %6.2f s: %6.0f msg/s\n",
		    name, n, got, c - a, got / (c - a) }'
}
echo "== delivery only: $N queued messages, then the runner / queue manager starts"
kill "$RUNNER" 2>/dev/null; wait "$RUNNER" 2>/dev/null
# straight into the queue with deliver (what smtpd-lite's chain does),
# so that this part measures the queue alone
awk -v size="$SIZE" 'BEGIN { printf "From: bench@example.com\nTo: rcpt@bench.test\nSubject: bench\n\n";
	for (n = 0; n < size; n += 60) printf "%s\n", substr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", 1, 59) }' >"$T/msg"
i=0
while [ $i -lt "$N" ]; do
	deliver -c "$C" -f bench@example.com rcpt@bench.test <"$T/msg" 2>/dev/null
	i=$((i + 1))
done
before=$(count)
queued=$(ls "$T/queue/info" | wc -l)
t0=$(now)
mxqueue -c "$C" run -f 2>>"$T/mxqueue.log" &
RUNNER2=$!
bg_pid $RUNNER2
waitsink $((before + queued))
t2=$(now)
report "mx (mxqueue run)" $(( $(count) - before )) "$t0" "$t2" "$queued"
pf_conf "smtpd_end_of_data_restrictions = check_client_access static:HOLD"
postfix -c "$T/pf/etc" reload >/dev/null 2>&1
sleep 1
"$SOURCE" -s "$CONC" -m "$N" -l "$SIZE" -f bench@example.com -t "rcpt@bench.test" \
    "127.0.0.1:$PP" >"$T/source.out" 2>&1
i=0
while [ "$(find "$T/pf/queue/hold" -type f 2>/dev/null | wc -l)" -lt "$N" ] && [ $i -lt 3000 ]; do
	sleep 0.05; i=$((i + 1))
done
before=$(count)
queued=$(find "$T/pf/queue/hold" -type f | wc -l)
t0=$(now)
postsuper -c "$T/pf/etc" -H ALL >/dev/null 2>&1	# to deferred/
postqueue -c "$T/pf/etc" -f >/dev/null 2>&1	# and now
waitsink $((before + queued))
t2=$(now)
report "postfix 3.7 (qmgr+smtp)" $(( $(count) - before )) "$t0" "$t2" "$queued"

# CPU seconds (user+system, with reaped children) of our two parents
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat" 2>/dev/null; }
echo "CPU seconds used in all: smtpd-lite (sessions, relaycheck, ruleproc, deliver) $(cpu $SMTPD), mxqueue (runner and workers, delivery-only run) $(cpu $RUNNER2)"
left=$(ls "$T/queue/info" 2>/dev/null | wc -l)
echo "(our queue afterwards: $left entries; every message is fsynced by deliver and each state"
echo " change of the queue entry too; Postfix also fsyncs its queue files)"
