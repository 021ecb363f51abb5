#!/bin/sh
# t/fuzz/run.sh [-u] [SECONDS]: build the libFuzzer harnesses for the
# rules parser and the message scanner with clang (ASan+UBSan) into
# build/fuzz and run each for SECONDS (default 60) on the kept corpus
# (t/fuzz/corpus.tar.gz) plus the seeds (t/fuzz/seeds/). With -u the
# corpus, merged down to the inputs that add coverage, is written back
# to t/fuzz/corpus.tar.gz. SECONDS=0 only replays the corpus (a quick
# regression check). Not part of `make test`. See t/fuzz/README.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
update=0
[ "${1:-}" = -u ] && { update=1; shift; }
secs=${1:-60}
out=$top/build/fuzz
rm -rf "$out/corpus" "$out/new"
mkdir -p "$out/corpus" "$out/new"
tar -C "$out/corpus" -xzf "$top/t/fuzz/corpus.tar.gz"
CC=${FUZZCC:-clang}
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$top/lib $(pkg-config --cflags libbsd-overlay)"
LIBS="$(pkg-config --libs libbsd-overlay)"
SRC="$top/lib/rules.c $top/lib/rules_eval.c $top/lib/rules_msg.c $top/lib/buf.c $top/lib/log.c $top/lib/addr.c $top/lib/ipaddr.c"
rc=0
for h in rules msg; do
	$CC $CFLAGS -o "$out/fuzz_$h" "$top/t/fuzz/fuzz_$h.c" $SRC $LIBS
	cp "$top/t/fuzz/seeds/$h/"* "$out/corpus/$h/"
	if [ "$secs" = 0 ]; then
		"$out/fuzz_$h" -runs=0 -rss_limit_mb=512 "$out/corpus/$h" >"$out/fuzz_$h.log" 2>&1 || rc=1
		echo "fuzz_$h: replayed $(ls "$out/corpus/$h" | wc -l) inputs: $(grep -q 'SUMMARY' "$out/fuzz_$h.log" && echo FAILED || echo ok)"
		continue
	fi
	mkdir -p "$out/new/$h"
	echo "fuzz_$h: ${secs}s"
	"$out/fuzz_$h" -max_total_time="$secs" -max_len=200000 -rss_limit_mb=512 -timeout=10 \
	    -dict="$top/t/fuzz/$h.dict" -artifact_prefix="$out/crash_$h-" \
	    "$out/new/$h" "$out/corpus/$h" >"$out/fuzz_$h.log" 2>&1 || rc=1
	grep -E '^Done|SUMMARY' "$out/fuzz_$h.log" || true
	mkdir -p "$out/merged/$h"
	"$out/fuzz_$h" -merge=1 -rss_limit_mb=512 "$out/merged/$h" "$out/corpus/$h" "$out/new/$h" >/dev/null 2>&1 || true
done
if [ $update = 1 ] && [ "$secs" != 0 ] && [ $rc = 0 ]; then
	tar -C "$out/merged" -czf "$top/t/fuzz/corpus.tar.gz" --sort=name --owner=0 --group=0 --numeric-owner \
	    --mtime=2026-01-01 rules msg
	echo "corpus updated: $(ls "$out/merged/rules" | wc -l) rules inputs, $(ls "$out/merged/msg" | wc -l) message inputs"
fi
rm -rf "$out/merged"
[ $rc = 0 ] && echo "no crashes" || echo "CRASH: see $out/crash_* and $out/fuzz_*.log"
exit $rc
