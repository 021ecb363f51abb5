# mxqueue: bounded concurrency: at most queue_per_destination
# connections to one destination at once, at most queue_workers
# deliveries in all, yet several at once when allowed; a backlog for one
# destination shares connections (several messages per connection).
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
qconf
PA=$(free_port)
PB=$(free_port)
printf 'a.test [127.0.0.1]:%s\nb.test [127.0.0.1]:%s\n' "$PA" "$PB" >"$C/routes"
mkcdb -c "$C" >/dev/null
sink a 127.0.0.1 "$PA" --slow 0.3
sink b 127.0.0.1 "$PB" --slow 0.3
i=1
while [ $i -le 12 ]; do
	qadd bob@example.com "x$i@a.test"
	qadd bob@example.com "y$i@b.test"
	i=$((i + 1))
done
is "$(qn)" 24 "24 entries for two destinations"

# per destination 2, workers 3
qset "queue_per_destination 2"
qset "queue_workers 3"
qrun
is "$(nmsg a)/$(nmsg b)" "12/12" "all delivered"
like "$(cat "$T/a/maxconc")" '^[12]$' "a.test: at most 2 connections at once (per destination)"
like "$(cat "$T/b/maxconc")" '^[12]$' "b.test: at most 2 connections at once"
n=$(grep -c '^EHLO' "$T/a/log")
like "$n" '^([1-9]|1[01])$' "a.test: 12 messages over fewer connections ($n)"

# the other way: per destination 6, workers 6: more at once
sink_stop a
rm -rf "$T/a"
sink a 127.0.0.1 "$PA" --slow 0.3
qset "queue_per_destination 6"
qset "queue_workers 6"
i=1
while [ $i -le 12 ]; do qadd bob@example.com "z$i@a.test"; i=$((i + 1)); done
qrun
is "$(nmsg a)" 12 "all 12 delivered"
like "$(cat "$T/a/maxconc")" '^[3-6]$' "several deliveries at once when allowed (at most 6)"
