#!/bin/sh
# bench/relaycheck.sh: RCPT decisions per second of `relaycheck -p`
# (Postfix policy protocol) on one core, with a 1,000,000-entry access
# table plus the sample conf/domains, conf/mailboxes and conf/backup.
# Target: >= 200,000 RCPT decisions/s.
#
#   sh bench/relaycheck.sh                  NREQ=1000000 requests, REPS=3
#   NREQ=200000 CPU=0 sh bench/relaycheck.sh
#
# The requests are pre-generated and pipelined from a file, each with
# the attributes smtpd-lite sends (smtpd-lite/policy.c), at
# protocol_state=RCPT: client addresses drawn from the table (/32 hits,
# hosts inside /24, /16, /48 and /64 entries) and 20% addresses that
# match no entry; recipients: 30% existing local (mailbox, alias, list,
# +ext, catch-all, mixed case), 10% unknown local, 5% backup domain,
# 55% foreign (relay attempts).  Every answer of a separate run is
# compared with answers computed independently here (awk, from the
# table text), so the figures are for correct decisions only.
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${BUILD:-$TOP/build}
N=${N:-1000000}		# access entries added to the sample table
NREQ=${NREQ:-1000000}
REPS=${REPS:-3}
CPU=${CPU:-1}		# core to pin relaycheck to
RC=$BUILD/bin/relaycheck
sh "$TOP/t/helpers/deps.sh" bench time tinycdb || exit 1
for p in mkcdb relaycheck; do
	[ -x "$BUILD/bin/$p" ] || make -s -C "$TOP" "$BUILD/bin/$p" >/dev/null || exit 1
done
T=$(mktemp -d "${TMPDIR:-/tmp}/mxbench.XXXXXX") || exit 1
# KEEP=1 keeps the files (for profiling) and says where they are
trap '[ -n "${KEEP:-}" ] && echo "kept $T" >&2 || rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

C=$T/conf
cp -R "$TOP/conf" "$C" || exit 1
rm -f "$C"/*.cdb "$C"/*.tmp
echo "# bench: $N generated entries" >>"$C/access"
sh "$TOP/bench/mkcdb.sh" gen "$N" "$T/gen" || exit 1
cat "$T/gen" >>"$C/access"
rm -f "$T/gen"
"$BUILD/bin/mkcdb" -q -c "$C" -f || { echo "mkcdb failed" >&2; exit 1; }
ad=$(awk '$1 == "access_default" {print $2}' "$C/settings")
[ "$ad" = allow ] || { echo "bench expects access_default allow, not '$ad'" >&2; exit 1; }

# Requests (reqs) and the expected answers (want), from the table text.
# Mailboxes and domains of the sample conf are spelled out below; the
# check that they still hold is the comparison itself.
awk -v nreq="$NREQ" -v accfile="$C/access" -v reqs="$T/reqs" -v want="$T/want" '
function rnd(m) {	# deterministic LCG, 0..m-1
	seed = (seed * 1103515245 + 12345) % 2147483648
	return int(seed / 65536) % m
}
function hx(m) { return sprintf("%x", 1 + rnd(m)) }
function v4(a, b, c, d) { return a "." b "." c "." d }
function lookup4(a, b, c, d,   k) {
	if ((k = v4(a, b, c, d) "/32") in act) return k
	if ((k = v4(a, b, c, 0) "/24") in act) return k
	if ((k = v4(a, b, 0, 0) "/16") in act) return k
	return ""
}
function lookup6(g1, g2, g3, g4, g8,   k) {	# host g1:g2:g3:g4:0:0:0:g8, all nonzero
	if ((k = g1 ":" g2 ":" g3 ":" g4 "::" g8 "/128") in act) return k
	if ((k = g1 ":" g2 ":" g3 ":" g4 "::/64") in act) return k
	if ((k = g1 ":" g2 ":" g3 "::/48") in act) return k
	if ((k = g1 ":" g2 "::/32") in act) return k
	return ""
}
BEGIN {
	seed = 42; n = 0
	while ((getline line < accfile) > 0) {
		sub(/(^|[ \t])#.*/, "", line)
		if (split(line, f, /[ \t]+/) < 2) continue
		k = f[1]
		if (k !~ /\//) k = k (k ~ /:/ ? "/128" : "/32")
		t = line; sub(/^[ \t]*[^ \t]+[ \t]+[^ \t]+[ \t]*/, "", t); sub(/[ \t]+$/, "", t)
		act[k] = f[2]; txt[k] = t; net[++n] = k
	}
	split("alice@example.com bob@example.com carol@example.com postmaster@example.com " \
	    "abuse@example.com sales@example.com dave@example.com eve@example.net " \
	    "postmaster@example.net bob+news@example.com Alice@Example.COM " \
	    "EVE@EXAMPLE.NET carol+x+y@example.com", known, " ")
	nk = 13
	for (j = 0; j < nreq; j++) {
		r = rnd(100)
		if (r < 80) {		# a host under a random table entry
			k = net[1 + (rnd(32768) * 32768 + rnd(32768)) % n]
			split(k, p, "/"); len = p[2]
			if (k ~ /:/) {
				split(p[1], g, ":")
				if (g[1] !~ /^2a/) { ip = "2a00:1:2:3::4"; g1 = "2a00"; g2 = 1; g3 = 2; g4 = 3; g8 = 4 }
				else {
					g1 = g[1]; g2 = g[2]; g3 = g[3]
					g4 = (len >= 64) ? g[4] : hx(65535)
					g8 = (len == 128) ? g[6] : hx(65535)
				}
			} else {
				split(p[1], o, ".")
				a = o[1]; b = o[2]
				c = (len >= 24) ? o[3] : rnd(256)
				d = (len == 32) ? o[4] : 1 + rnd(254)
			}
		} else if (r < 95) {	# IPv4 that probably matches nothing
			do { a = 1 + rnd(223) } while (a == 127 || a == 192)
			b = rnd(256); c = rnd(256); d = 1 + rnd(254); k = "v4"
		} else {		# IPv6 that probably matches nothing
			g1 = sprintf("2a%02x", rnd(256)); g2 = hx(65535); g3 = hx(65535)
			g4 = hx(65535); g8 = hx(65535); k = "v6:"
		}
		if (k ~ /:/) {
			ip = g1 ":" g2 ":" g3 ":" g4 ":0:0:0:" g8
			m = lookup6(g1, g2, g3, g4, g8)
		} else {
			ip = v4(a, b, c, d)
			m = lookup4(a, b, c, d)
		}
		ca = (m == "") ? "allow" : act[m]
		r = rnd(100)
		if (r < 30) {
			rcpt = (r < 3) ? "someone" j "@example.org" : known[1 + rnd(nk)]
			ans = "DUNNO"
		} else if (r < 40) {
			rcpt = (r < 35 ? "nobody" : "Nobody.") j "@" (r % 2 ? "example.com" : "Example.NET")
			lc = rcpt; sub(/@.*/, "", lc); dom = rcpt; sub(/.*@/, "", dom)
			ans = "550 5.1.1 <" lc "@" tolower(dom) ">: Recipient address rejected: User unknown"
		} else if (r < 45) {
			rcpt = "user" j "@backup.example"; ans = "DUNNO"
		} else {
			rcpt = "user" j "@d" rnd(1000) ".test"
			ans = (ca == "relay") ? "OK" : "554 5.7.1 <" rcpt ">: Relay access denied"
		}
		if (ca == "deny")
			ans = "554 5.7.1 " (txt[m] != "" ? txt[m] : "Access denied")
		printf "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" \
		    "client_address=%s\nclient_name=unknown\nreverse_client_name=unknown\n" \
		    "client_port=%d\nserver_address=127.0.0.1\nserver_port=25\n" \
		    "helo_name=h%d.example\nsender=s%d@client.example\nrecipient=%s\n" \
		    "recipient_count=0\nqueue_id=\ninstance=%x.%x\nsize=%d\n\n",
		    ip, 1024 + rnd(60000), j, j, rcpt, j, rnd(65536), rnd(100000) > reqs
		printf "action=%s\n\n", ans > want
	}
}' || exit 1
reqbytes=$(wc -c <"$T/reqs" | tr -d ' ')

run="taskset -c $CPU $RC -p -c $C"
# correctness: every answer of one run against the expected ones
env -u RELAYCLIENT $run <"$T/reqs" >"$T/got" || { echo "relaycheck failed" >&2; exit 1; }
if ! cmp -s "$T/got" "$T/want"; then
	echo "WRONG ANSWERS: relaycheck's answers differ from the expected ones:" >&2
	diff "$T/want" "$T/got" | head -20 >&2
	exit 1
fi
checked=$(grep -c '^action=' "$T/got")
summary=$(sed -n 's/^action=\([^ ]*\).*/\1/p' "$T/got" | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1) ? ", " : "", $2, $1}')
rm -f "$T/got"

: >"$T/times"
i=0
while [ "$i" -lt "$REPS" ]; do
	env -u RELAYCLIENT /usr/bin/time -o "$T/.t" -f '%e %M' $run <"$T/reqs" >/dev/null ||
		{ echo "relaycheck failed" >&2; exit 1; }
	cat "$T/.t" >>"$T/times"
	i=$((i + 1))
done
med() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
t=$(cut -d' ' -f1 "$T/times" | med)
rss=$(cut -d' ' -f2 "$T/times" | med)
each=$(cut -d' ' -f1 "$T/times" | tr '\n' ' ')
rate=$(awk -v n="$NREQ" -v t="$t" 'BEGIN {printf "%d", (t > 0) ? n / t : 0}')

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "relaycheck -p: $NREQ RCPT requests ($((reqbytes / 1048576)) MB, pipelined from a file), $(awk '/^[^#]/ && NF' "$C/access" | wc -l | tr -d ' ')-entry access table, pinned to CPU $CPU, $REPS runs"
printf '%-24s %10s %14s %16s\n' "wall s (each run)" "median s" "peak RSS kB" "decisions/s"
printf '%-24s %10s %14s %16s\n' "$each" "$t" "$rss" "$rate"
echo "answers verified: all $checked of one run match the expected ones ($summary)"
awk -v r="$rate" 'BEGIN {printf "target >= 200000 RCPT decisions/s: %s\n", (r >= 200000) ? "met" : "MISSED"}'
echo "command (median wall time from /usr/bin/time -f '%e %M'):"
echo "  env -u RELAYCLIENT $run < reqs > /dev/null"
