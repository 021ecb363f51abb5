# mxqueue: SIGKILL of the runner (and its workers) in the middle of
# deliveries, then a restart: every message is delivered at least once
# and the queue ends empty; kills at random moments over many messages;
# housekeeping of tmp/ leftovers and orphan mess/ files.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
if ! command -v setsid >/dev/null; then skip "setsid not installed"; exit 0; fi
qconf
P=$(free_port)
echo "crash.test [127.0.0.1]:$P" >"$C/routes"
mkcdb -c "$C" >/dev/null
mkdir -p "$T/r" && chmod 777 "$T/r"

# the runner in its own process group, so that a kill takes its workers too
start_runner() {
	setsid mxqueue -c "$C" run -f >>"$T/runner.log" 2>&1 &
	RUNNER=$!
	bg_pid "$RUNNER"
}
kill_runner() {
	kill -9 "-$RUNNER" 2>/dev/null
	wait "$RUNNER" 2>/dev/null
}

# 1. killed while the server holds the dot (slow sink: 2 s before 250)
sink slow 127.0.0.1 "$P" --slow 2
printf 'Subject: crash 1\n\nbody of crash one\n' >"$T/m"
qadd bob@example.com k1@crash.test
start_runner
ok "the runner reached DATA" wait_for "grep -q '^DATA' '$T/slow/log'"
sleep 0.5
kill_runner
is "$(qn)" 1 "after SIGKILL mid-delivery the entry is still queued"
nok "no worker left behind" kill -0 "$RUNNER"
sleep 2
sink_stop slow
sink fast 127.0.0.1 "$P"
start_runner
ok "restarted runner delivers it" wait_for 'test "$(nmsg fast)" -ge 1'
ok "queue empty after the restart" wait_for 'test "$(qn)" -eq 0'
total=$(( $(nmsg slow) + $(nmsg fast) ))
like "$total" '^[12]$' "delivered at least once (and at most twice): $total"
ok "body intact" grep -q '^body of crash one' "$T/fast/msg.1"
kill_runner
sink_stop fast

# 2. 30 messages, the runner killed at random moments five times
sink many 127.0.0.1 "$P" --slow 0.05
i=1
while [ $i -le 30 ]; do
	printf 'Subject: m%s\n\nbody %s\n' "$i" "$i" >"$T/m"
	qadd bob@example.com "n$i@crash.test"
	i=$((i + 1))
done
is "$(qn)" 30 "30 entries queued"
for k in 1 2 3 4 5; do
	start_runner
	sleep "0.$(( $(od -An -N1 -tu1 /dev/urandom) % 6 + 1 ))"
	kill_runner
done
start_runner
ok "after five kills and a restart the queue drains" wait_for 'test "$(qn)" -eq 0'
kill_runner
missing=0
i=1
while [ $i -le 30 ]; do
	grep -q "^X-Sink-To: <n$i@crash.test>" "$T"/many/msg.* || missing=$((missing + 1))
	i=$((i + 1))
done
is "$missing" 0 "every one of the 30 arrived at least once"
is "$(ls "$Q/tmp" | wc -l | tr -d ' ')" 0 "no tmp/ leftovers"
# a kill between removing info/ID and mess/ID leaves an orphan message
# (delivered already; housekeeping removes it after a day): at most one
# per worker killed, and never one whose info is still there
orph=$(ls "$Q/mess" | wc -l | tr -d ' ')
like "$orph" '^([0-9]|[1-4][0-9]|50)$' "orphan mess/ files at most one per killed worker ($orph)"
sink_stop many

# 3. housekeeping: stale tmp/ files and old orphans go, fresh ones stay
echo x >"$Q/tmp/old.info"; touch -d '2 days ago' "$Q/tmp/old.info"
echo x >"$Q/tmp/new.info"
echo x >"$Q/mess/1600000000.M1P1Q1"; touch -d '2 days ago' "$Q/mess/1600000000.M1P1Q1"
echo x >"$Q/mess/1600000000.M2P1Q1"
qrun
nok "tmp/ file older than 36 h removed" test -e "$Q/tmp/old.info"
ok "fresh tmp/ file kept (may be being written)" test -e "$Q/tmp/new.info"
nok "orphan mess/ file older than a day removed" test -e "$Q/mess/1600000000.M1P1Q1"
ok "fresh orphan kept (its info may be on the way)" test -e "$Q/mess/1600000000.M2P1Q1"

# 4. a truncated info file (no "end") is never used
id=1700000001.M1P1Q1
echo x >"$Q/mess/$id"
printf 'mxqueue 1\nid %s\ncreated 1\nsender a@b\nrcpt\tpending\t0\t0\t0\trelay\tz@crash.test\tz@crash.test\t\t\t\t\n' "$id" >"$Q/info/$id"
chmod 666 "$Q/info/$id" "$Q/mess/$id"
qrun
ok "truncated info: left alone (not sent, not removed)" test -e "$Q/info/$id"
like "$(cat "$T/run.log")" 'truncated' "truncated info: logged"
# ... and a runner does not spin on it: one warning per queue_scan
start_runner
sleep 2.5
kill_runner
n=$(grep -c 'truncated' "$T/runner.log")
like "$n" '^[1-8]$' "daemon: a broken entry is looked at about once per queue_scan, no busy loop ($n warnings in 2.5 s)"
rm -f "$Q/info/$id" "$Q/mess/$id"

# 5. info/ID without mess/ID (never made by the queue code): removed
id=1700000002.M1P1Q1
printf 'mxqueue 1\nid %s\ncreated 1\nsender a@b\nrcpt\tpending\t0\t0\t0\trelay\tz@crash.test\tz@crash.test\t\t\t\t\nend\n' "$id" >"$Q/info/$id"
chmod 666 "$Q/info/$id"
qrun
nok "info without its message: removed" test -e "$Q/info/$id"
like "$(grep "$id" "$T/run.log")" 'without its message file' "... and logged"
