# mxqueue admin commands: list, summary, flush (all, one domain, one
# id), remove, requeue, deliver; the runner as a daemon (detaches,
# pid file) and in the foreground woken by the trigger FIFO; -h, usage.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
qconf
qset "retry_min 1h"
qset "retry_max 4h"
qset "queue_scan 1h"
mq() { mxqueue -c "$C" "$@"; }
PA=$(free_port)
PB=$(free_port)
printf 'one.test [127.0.0.1]:%s\ntwo.test [127.0.0.1]:%s\n' "$PA" "$PB" >"$C/routes"
mkcdb -c "$C" >/dev/null

ok "mxqueue -h prints the usage" sh -c "mxqueue -h | grep -q '^usage: mxqueue'"
mxqueue -c "$C" bogus >/dev/null 2>&1; is "$?" 100 "unknown command: exit 100"
mxqueue -c "$C" >/dev/null 2>&1; is "$?" 100 "no command: exit 100"

# nothing listens: three entries deferred for an hour
qadd alice@example.com a1@one.test
qadd alice@example.com b1@two.test
qadd "" c1@one.test c2@two.test
qrun
is "$(qn)" 3 "three entries deferred"
mq list >"$T/list"
is "$(grep -Ec '^[0-9]+\.M' "$T/list")" 3 "list: one line per entry"
like "$(grep '^[0-9]' "$T/list" | head -n 1)" '^[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+  [0-9]+s  [0-9]+  <' "list: id, age, size, <sender>"
ok "list: the null sender shows as <>" grep -q '  <>' "$T/list"
like "$(grep 'a1@one.test' "$T/list")" 'pending +relay <a1@one.test>  attempts 1, next in (59|60)m' "list: recipient, state, attempts, next try"
like "$(grep -A1 'a1@one.test' "$T/list" | tail -n 1)" '^        4\.4\.1 cannot connect to 127\.0\.0\.1' "list: the last error under the recipient"
is "$(tail -n 1 "$T/list")" "3 entries in the queue" "list: a count at the end"
id1=$(grep -B1 'a1@one.test' "$T/list" | head -n 1 | cut -d' ' -f 1)
like "$(mq list "$id1")" 'a1@one.test' "list ID: one entry"
nok "list of an unknown id fails" mq list 1.M1P1Q1

mq summary >"$T/sum"
like "$(sed -n 2p "$T/sum")" '^entries 3, [0-9]+ bytes, oldest [0-9]+s$' "summary: entries, bytes, oldest"
like "$(sed -n 3p "$T/sum")" '^recipients: 4 pending \(0 due now, 4 deferred\)' "summary: recipients by state"
ok "summary: by destination" grep -Eq '^ +2  one\.test$' "$T/sum"
ok "summary: top errors" grep -Eq '^ +[0-9]+  4\.4\.1 cannot connect' "$T/sum"
like "$(wc -l <"$T/sum")" '^ *([0-9]|1[0-9]|2[0-4])$' "summary fits on one screen"

# flush one domain, then deliver: only one.test's recipients move
sink a 127.0.0.1 "$PA"
sink b 127.0.0.1 "$PB"
like "$(mq flush -d one.test)" '^flushed 2 entries' "flush -d one.test: two entries touched"
qrun
is "$(nmsg a)/$(nmsg b)" "2/0" "flush -d: one.test delivered, two.test still waiting"
is "$(qn)" 2 "two entries left"
# flush one id
idb=$(grep -l 'b1@two.test' "$Q"/info/* | xargs -n1 basename)
mq flush "$idb" >/dev/null
qrun
is "$(nmsg b)" 1 "flush ID: that entry delivered"
is "$(qn)" 1 "one entry left (c2@two.test)"

# remove: gone for good, no bounce
rm -f "$M"/alice/new/*
idc=$(ls "$Q/info")
ok "remove ID" mq remove "$idc"
is "$(qn)" 0 "removed: the queue is empty"
nok "removed: no mess/ left" test -e "$Q/mess/$idc"
nok "remove of an unknown id fails" mq remove "$idc"

# requeue: a failed recipient pending again, attempts and lifetime reset
sink_stop b
qadd alice@example.com p5x@two.test y@two.test
id=$(ls "$Q/info")
mv "$Q/info/$id" "$T/info.save"
sed -e 's/^rcpt\tpending\t0\t0\t0\trelay\tp5x/rcpt\tfailed\t1\t0\t5\trelay\tp5x/' \
    -e 's/^rcpt\tpending\t0\t0\t0\trelay\ty@/rcpt\tpending\t7\t9999999999\t5\trelay\ty@/' \
    -e 's/^created .*/created 1000/' "$T/info.save" >"$Q/info/$id"
chmod 666 "$Q/info/$id"
nok "requeue without ids or -a is a usage error" mq requeue
like "$(mq requeue "$id")" "requeued 2 recipients" "requeue ID: both recipients"
is "$(grep '^rcpt' "$Q/info/$id" | cut -f 2,3,4 | tr '\t' ' ')" "pending 0 0
pending 0 0" "requeue: pending, attempts 0, next try now"
like "$(grep '^created' "$Q/info/$id")" "^created $(date +%s | cut -c1-8)" "requeue: the lifetime starts again"

# deliver ID: one forced attempt in the foreground
sink b 127.0.0.1 "$PB"
mq deliver "$id" 2>"$T/deliver-id.log"
is "$(nmsg b)" 2 "deliver ID: sent now"
nok "deliver ID: the entry is done" test -e "$Q/info/$id"
qrun
is "$(qn)" 0 "the bounce for the 550 went out on the next run"
ok "the 550 bounce reached alice" grep -q '^Final-Recipient: rfc822; p5x@two.test' "$M"/alice/new/*

# the daemon: detaches, writes its pid, the trigger wakes it at once
mkdir -p "$T/r" && chmod 777 "$T/r"
mxqueue -c "$C" run -p "$T/r/pid" 2>"$T/daemon.log"
is "$?" 0 "run (daemon): returns at once"
ok "daemon: pid file" wait_for "test -s '$T/r/pid'"
dpid=$(cat "$T/r/pid" 2>/dev/null)
[ -n "$dpid" ] && bg_pid "$dpid"
ok "daemon: running" kill -0 "$dpid"
ok "daemon: made the trigger FIFO" wait_for "test -p '$Q/trigger'"
qadd alice@example.com d1@one.test
ok "daemon: a new entry is sent within seconds (trigger, not the 1 h scan)" wait_for 'test "$(nmsg a)" -eq 3'
ok "daemon: the entry is removed" wait_for 'test "$(qn)" -eq 0'
kill "$dpid"
ok "daemon: stops on SIGTERM" wait_for "! kill -0 $dpid"

# foreground runner: flush wakes it for deferred entries
sink_stop a
qadd alice@example.com f1@one.test
qrun
mxqueue -c "$C" run -f 2>"$T/fg.log" &
fpid=$!
bg_pid "$fpid"
sleep 0.5
is "$(qn)" 1 "foreground runner: a deferred entry waits"
sink a 127.0.0.1 "$PA"
mq flush >/dev/null
ok "flush wakes the foreground runner: delivered" wait_for 'test "$(nmsg a)" -eq 4'
# SIGHUP: settings read again (here: the name in EHLO)
qset "hostname reloaded.example"
kill -HUP "$fpid"
ok "SIGHUP: logged" wait_for "grep -q 'settings reloaded' '$T/fg.log'"
qadd alice@example.com h1@one.test
ok "after SIGHUP the new settings apply (EHLO reloaded.example)" wait_for "grep -q '^EHLO reloaded.example' '$T/a/log'"
ok "SIGHUP: the runner is still there" kill -0 "$fpid"
kill "$fpid"
ok "foreground runner: logs one line per event with the entry id" grep -Eq '^mxqueue\[[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+\]: to=<f1@one.test> relay delivered' "$T/fg.log"
