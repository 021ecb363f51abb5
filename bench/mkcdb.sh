#!/bin/sh
# bench/mkcdb.sh: build time and peak memory of mkcdb on a 1,000,000-line
# access table, side by side with Debian's `cdb -c -m` (tinycdb) on the
# same key/value data, in the same run.  Target: mkcdb within 1.5x of
# `cdb -m` (mkcdb validates every line; both write a temp file and
# rename it into place).
#
#   sh bench/mkcdb.sh                 N=1000000 lines, REPS=3 (alternating)
#   N=100000 REPS=5 sh bench/mkcdb.sh
#   sh bench/mkcdb.sh gen N ACCESS [KV]   only write the generated table
#                                         (and the key/value file); used
#                                         by bench/relaycheck.sh too
#
# The table is deterministic: a mix of IPv4 /32 (60%, half written
# without "/32"), /24 (30%), /16 (2%) and IPv6 /48, /64, /128 (8%), every
# key unique, actions allow/relay/deny, some with reply texts.  No
# address falls in 0/8, 127/8, 192/8 or 224/3, nor under 2001:db8::/32,
# so the table can be appended to the sample conf/access.
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${BUILD:-$TOP/build}

# gen N [KV]: the access table on stdout; KV gets "NETWORK REST-OF-LINE".
gen() {
	awk -v n="$1" -v kv="${2:-}" '
	function v4(x, w) {	# x: 0..2^32-1 -> dotted quad
		return int(x / 16777216) "." int(x / 65536) % 256 "." int(x / 256) % 256 "." x % 256
	}
	function bad(a) { return a == 0 || a == 127 || a == 192 || a >= 224 }
	BEGIN {
		M32 = 4294967296; c32 = c24 = c16 = c6 = 0
		for (i = 0; i < n; i++) {
			k = i % 100
			if (k < 60) {		# /32: odd multiplier mod 2^32 is a bijection
				do { x = (c32++ * 2654435761) % M32 } while (bad(int(x / 16777216)))
				net = v4(x) (i % 2 ? "/32" : "")
			} else if (k < 90) {	# /24
				do { x = (c24++ * 2654435761) % 16777216 } while (bad(int(x / 65536)))
				net = v4(x * 256) "/24"
			} else if (k < 92) {	# /16
				do { x = (c16++ * 40503) % 65536 } while (bad(int(x / 256)))
				net = v4(x * 65536) "/16"
			} else {		# IPv6: (g1, g2) is unique per c6
				g1 = sprintf("2a%02x", c6 % 256); g2 = 1 + int(c6 / 256)
				g3 = 1 + (c6 * 7919) % 65535; g4 = 1 + (c6 * 104729) % 65535
				g8 = 1 + (c6 * 31) % 65535; s = c6 % 3; c6++
				if (s == 0)
					net = sprintf("%s:%x:%x::/48", g1, g2, g3)
				else if (s == 1)
					net = sprintf("%s:%x:%x:%x::/64", g1, g2, g3, g4)
				else
					net = sprintf("%s:%x:%x:%x::%x", g1, g2, g3, g4, g8)
			}
			h = (i * 7919 + 13) % 100
			if (h < 55) {
				act = "allow"; text = (h < 6) ? " customer " (i % 9973) : ""
			} else if (h < 80) {
				act = "relay"; text = (h < 60) ? " branch office " (i % 97) : ""
			} else {
				act = "deny"
				text = (h < 94) ? " Listed as a spam source, see https://bl.example/q?n=" i : ""
			}
			print net "\t" act text
			if (kv != "")
				print net " " act text > kv
		}
	}'
}

if [ "${1:-}" = gen ]; then
	shift
	gen "$1" "${3:-}" >"$2"
	exit
fi

N=${N:-1000000}
REPS=${REPS:-3}
MKCDB=$BUILD/bin/mkcdb
sh "$TOP/t/helpers/deps.sh" bench time tinycdb || exit 1
[ -x "$MKCDB" ] || make -s -C "$TOP" "$MKCDB" >/dev/null || exit 1
T=$(mktemp -d "${TMPDIR:-/tmp}/mxbench.XXXXXX") || exit 1
# KEEP=1 keeps the files (for profiling) and says where they are
trap '[ -n "${KEEP:-}" ] && echo "kept $T" >&2 || rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

: >"$T/settings"
gen "$N" "$T/kv.txt" >"$T/access"
lines=$(wc -l <"$T/access" | tr -d ' ')
[ "$lines" -eq "$N" ] || { echo "generator wrote $lines lines, not $N" >&2; exit 1; }

run_mkcdb="$MKCDB -c $T -f access"
run_cdb="cdb -c -m $T/out.cdb $T/kv.txt"
timed() {	# timed OUTFILE CMD...: appends "seconds peakKB cpu-seconds"
	out=$1; shift
	/usr/bin/time -o "$T/.t" -f '%e %M %U %S' "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }
	awk '{printf "%s %s %.2f\n", $1, $2, $3 + $4}' "$T/.t" >"$T/.t2" && mv "$T/.t2" "$T/.t"
	cat "$T/.t" >>"$out"
}
: >"$T/m"; : >"$T/c"
r=0
while [ "$r" -lt "$REPS" ]; do
	rm -f "$T/access.cdb" "$T/out.cdb"
	timed "$T/m" $run_mkcdb
	timed "$T/c" $run_cdb
	r=$((r + 1))
done

# both files hold the same records (+2 for mkcdb's "/lengths4|6")
nm=$(cdb -s "$T/access.cdb" | awk '/^number of records/ {print $NF}')
nc=$(cdb -s "$T/out.cdb" | awk '/^number of records/ {print $NF}')
[ "$nm" -eq $((N + 2)) ] && [ "$nc" -eq "$N" ] ||
	{ echo "record counts differ: mkcdb $nm, cdb $nc (want $((N + 2)), $N)" >&2; exit 1; }

med() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
mt=$(cut -d' ' -f1 "$T/m" | med); mr=$(cut -d' ' -f2 "$T/m" | med)
ct=$(cut -d' ' -f1 "$T/c" | med); cr=$(cut -d' ' -f2 "$T/c" | med)
mc=$(cut -d' ' -f3 "$T/m" | med); cc=$(cut -d' ' -f3 "$T/c" | med)
runs() { cut -d' ' -f1 "$1" | tr '\n' ' '; }

echo "mkcdb vs cdb -m: $N-line access table, $(du -k "$T/access" | cut -f1) kB text, $REPS runs each, alternating"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
printf '%-8s %-20s %9s %14s %12s %9s\n' tool "wall s (each run)" "median s" "peak RSS kB" "cpu s (u+s)" "records"
printf '%-8s %-20s %9s %14s %12s %9s\n' mkcdb "$(runs "$T/m")" "$mt" "$mr" "$mc" "$nm"
printf '%-8s %-20s %9s %14s %12s %9s\n' "cdb -m" "$(runs "$T/c")" "$ct" "$cr" "$cc" "$nc"
awk -v mt="$mt" -v ct="$ct" -v mr="$mr" -v cr="$cr" 'BEGIN {
	rt = (ct > 0) ? mt / ct : 0; rr = (cr > 0) ? mr / cr : 0
	printf "ratio mkcdb/cdb: time %.2fx, peak RSS %.2fx; target time <= 1.5x: %s\n", \
	    rt, rr, (rt <= 1.5) ? "met" : "MISSED"
}'
echo "commands (medians of /usr/bin/time -f '%e %M %U %S'; mkcdb also fsyncs, cdb does not):"
echo "  $run_mkcdb        # DIR has an empty settings file"
echo "  $run_cdb"
