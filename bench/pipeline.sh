#!/bin/sh
# bench/pipeline.sh: the whole pipeline against Postfix, in one run on one
# machine (issue 7).
#
#   ours-l    smtpd-lite -l (its own listener)
#   ours-tcp  tcpserver -RHl localhost -b 1000 ... smtpd-lite (-b: the
#             default listen backlog of 20 drops SYNs at C=50)
#             both with relaycheck -p and ruleproc -p as policy co-processes
#             and the chain ruleproc -> deliver into Maildirs, a realistic
#             13-rule file (add-header on every message, body, attachment,
#             header, size, time rules);
#   postfix   a private Postfix (t/helpers/postfix.sh), virtual(8) Maildir
#             delivery (fsyncs), anvil limits off;
#   opensmtpd a private OpenSMTPD (bench/opensmtpd.sh: Debian's package,
#             which conflicts with postfix, fetched with apt-get download
#             and unpacked into /var/cache/mxbench-opensmtpd, run in a
#             private mount namespace), maildir delivery through a
#             virtual table, its compiled-in listen backlog of 5 raised
#             to 1024 by an LD_PRELOAD shim (OSD_BACKLOG=0: as shipped,
#             which stalls smtp-source for 1 s per dropped SYN at C>=8);
#             opt-in: SERVERS="ours-l postfix opensmtpd".
#             If it cannot be fetched or started the run goes on
#             without it ("opensmtpd: skipped (reason)").
#
# Each server runs in its own cgroup (v1 cpuacct, else v2) for its CPU
# time. Postfix's smtp-source sends N messages of S bytes over C parallel
# sessions, one message per connection (how most MX traffic arrives);
# the time is from the client's start until all N files are in new/
# (polled every 2 ms by bench/pipeline-tool), then every Maildir is
# checked: exactly N files, N distinct Message-Ids (none lost, none
# duplicated). The servers alternate run by run (the order rotates).
# Also: memory per idle session (100 sessions after EHLO: PSS and RSS of
# the session processes / 100) and the fsync limit of the filesystem
# (pipeline-tool fsync: write+fsync+rename+fsync(dir) of S-byte files
# with 1 and C writers).
#
#   sh bench/pipeline.sh                 the issue's matrix: N=2000,
#                                        S=2K,64K x C=1,10,50, + 5 rcpts; 3 reps
#   QUICK=1 sh bench/pipeline.sh         N=300, 1 rep, C=10 and 50 only
#   N=500 REPS=3 ROWS="2048:10:1 65536:50:1" sh bench/pipeline.sh
#   SERVERS="ours-l postfix" ...         a subset of the servers
#   SERVERS="ours-l postfix opensmtpd"   with OpenSMTPD ('x osd' columns)
#
# Loopback only, temp dirs under /tmp, root (cgroups, Postfix); not part
# of `make test`. KEEP=1 keeps the temp dir.
set -u
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
export TOP
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/postfix.sh"
. "$TOP/bench/opensmtpd.sh"

if [ -n "${QUICK:-}" ]; then
	N=${N:-300} REPS=${REPS:-1} ROWS=${ROWS:-"2048:10:1 2048:50:1 65536:10:1 2048:10:5"}
	FS_N=${FS_N:-300}
else
	N=${N:-2000} REPS=${REPS:-3}
	ROWS=${ROWS:-"2048:1:1 2048:10:1 2048:50:1 65536:1:1 65536:10:1 65536:50:1 2048:10:5"}
	FS_N=${FS_N:-2000}
fi
SERVERS=${SERVERS:-"ours-l ours-tcp postfix"}
IDLE=${IDLE:-100}
TIMEOUT=${TIMEOUT:-300}
[ "$(id -u)" = 0 ] || { echo "skip: needs root (cgroups, Postfix)"; exit 0; }
for p in smtp-source tcpserver postfix cc python3; do
	command -v $p >/dev/null || { echo "skip: $p not installed"; exit 0; }
done

# our own temp dir name: other sessions' clean-ups of /tmp/mxtest.* must
# not pull the Maildirs away mid-run (seen on the shared machine)
rm -rf "$T"
T=$(mktemp -d /var/tmp/mxbench.XXXXXX) || exit 1
chmod 755 "$T"
# each server's tree in block groups of its own (ext4's Orlov allocator
# spreads the subdirectories of a +T directory): without a journal, ext4
# skips every inode freed in the last 30 s when it allocates one
# (recently_deleted), so Postfix's and OpenSMTPD's deleted queue files
# made the next server's file creations dearer, whichever ran next
chattr +T "$T" 2>/dev/null
[ -z "${KEEP:-}" ] || echo "temp dir (kept): $T"
# a snapshot of the programs: a `make` elsewhere in the tree during the
# run must not swap binaries under a running server (ETXTBSY, ENOENT)
mkdir -p "$T/bin" && cp "$BIN"/* "$T/bin/" || { echo "no programs in $BIN"; exit 1; }
BIN=$T/bin
PATH=$BIN:$PATH
export BIN PATH
TOOL=$T/pipeline-tool
cc -O2 -o "$TOOL" "$TOP/bench/pipeline-tool.c" || { echo "cannot build pipeline-tool"; exit 1; }

# ---- cgroups: one per server, for CPU time and the process list ----
if [ -w /sys/fs/cgroup/cpuacct ]; then
	CG=/sys/fs/cgroup/cpuacct/mxbench.$$
	cpu_ns() { cat "$CG/$1/cpuacct.usage"; }
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CG=/sys/fs/cgroup/mxbench.$$
	cpu_ns() { awk '/^usage_usec/ {printf "%d000\n", $2}' "$CG/$1/cpu.stat"; }
else
	echo "skip: no writable cgroup (v1 cpuacct or v2)"; exit 0
fi
mkdir -p "$CG"
cg_pids() { cat "$CG/$1/cgroup.procs" 2>/dev/null; }
cg_cleanup() {
	# every server's cgroup, also of one skipped after it was started
	for d in "$CG"/*/; do
		[ -d "$d" ] || continue
		for p in $(cg_pids "$(basename "$d")"); do kill "$p" 2>/dev/null; done
	done
	pf_stop
	sleep 0.5
	for d in "$CG"/*/; do
		[ -d "$d" ] || continue
		i=0	# OpenSMTPD's processes take a moment to go
		while [ -n "$(cg_pids "$(basename "$d")")" ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
		rmdir "$d" 2>/dev/null
	done
	rmdir "$CG" 2>/dev/null
	cleanup
}
trap cg_cleanup EXIT INT TERM
# in_cg NAME CMD...: run CMD (and all it starts) in the server's cgroup
in_cg() { g=$1; shift; mkdir -p "$CG/$g"; sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG/$g" "$@"; }

# ---- our server ----
newconf
C=$T/conf
cat >"$C/domains" <<EOF
bench.test
EOF
: >"$C/mailboxes"
for u in u 2u 3u 4u 5u; do echo "$u@bench.test $u/" >>"$C/mailboxes"; done
cat >>"$C/settings" <<EOF
hostname mx.bench.test
max_connections 1000
max_per_ip 1000
chain $BIN/ruleproc -c $C $BIN/deliver -c $C
EOF
cat >"$C/rules" <<'EOF'
# bench rules: what a small site might run. Only the first rule applies
# to smtp-source's mail (a header added to every message); the others
# are evaluated and do not match.
body-scan 64K

rule "Mark filtered mail"
    add-header X-Rules "checked by ruleproc"
    continue

rule "Reject executable attachments"
    attachment *.exe *.scr *.pif *.com *.bat *.cmd *.vbs *.js *.jar
    reject 550 5.7.1 "Executable attachments are not accepted here; send a link instead"

rule "Forged local sender from outside"
    sender *@bench.test *@example.com
    not client 10.0.0.0/8 192.168.0.0/16
    not authenticated
    reject 550 5.7.1 "You are not allowed to use our domain as the sender"

rule "Dave has left"
    recipient dave@bench.test
    redirect u@bench.test

rule "Archive sales"
    recipient sales@bench.test
    copy archive@bench.test
    continue

rule "Mailing lists"
    match any
    header List-Id *
    header Precedence list bulk
    folder Lists
    continue

rule "Junk tagged spam"
    header Subject "*[SPAM]*" "*viagra*"
    folder Junk

rule "Spam words in the body"
    body /(cheap|discount) (pills|watches|meds)/ "*unsubscribe from this list*"
    folder Junk

rule "No mail for the old domain"
    recipient *@old.bench.test
    reject 550 5.1.1 "This domain no longer receives mail"

rule "Big mail from outside"
    size > 20M
    not client 192.168.0.0/16
    reject 552 5.3.4 "Message too big for this site"

rule "Drop known junk silently"
    sender *@junk.example /^bounce-[0-9]+@/
    discard

rule "Test domain sleeps at night"
    recipient *@test.bench.test
    time 22:00-06:00
    tempfail 451 4.3.2 "Test domain is offline at night, try again later"

rule "Newsletters"
    header From "*@news.*" "*newsletter*"
    folder News
EOF
mkcdb -c "$C" >/dev/null && ruleproc -t -c "$C" >/dev/null || { echo "bench conf broken"; exit 1; }
OURMAIL=$T/mail
mk_maildirs() {	# DIR OWNER
	for u in u 2u 3u 4u 5u; do mkdir -p "$1/$u/tmp" "$1/$u/new" "$1/$u/cur"; done
	chown -R "$2" "$1"
}
mk_maildirs "$OURMAIL" nobody

declare_ports() {
	P_ours_l=$(free_port); P_ours_tcp=$(free_port); P_postfix=$(free_port); P_opensmtpd=$(free_port)
}
declare_ports

# ---- Postfix ----
PFMAIL=$T/pfmail
mk_maildirs "$PFMAIL" nobody:nogroup
pf_init "$T/pf" "$P_postfix"
: >"$T/pf/etc/vmailbox"
for u in u 2u 3u 4u 5u; do echo "$u@bench.test $u/" >>"$T/pf/etc/vmailbox"; done
pf_conf "virtual_mailbox_domains = bench.test"
pf_conf "virtual_mailbox_base = $PFMAIL"
pf_conf "virtual_mailbox_maps = texthash:$T/pf/etc/vmailbox"
pf_conf "virtual_uid_maps = static:$(id -u nobody)"
pf_conf "virtual_gid_maps = static:$(getent group nogroup | cut -d: -f3)"
pf_conf "virtual_minimum_uid = 1"
pf_conf "smtpd_client_message_rate_limit = 0"
pf_conf "smtpd_client_recipient_rate_limit = 0"
pf_conf "smtpd_client_event_limit_exceptions = 0.0.0.0/0"
chmod 755 "$T" "$T/pf"

# ---- OpenSMTPD (bench/opensmtpd.sh) ----
OSDMAIL=$T/osdmail
has_server() { case " $SERVERS " in *" $1 "*) return 0 ;; esac; return 1; }
drop_server() {	# NAME REASON
	echo "$1: skipped ($2)"
	SERVERS=$(echo " $SERVERS " | sed "s/ $1 / /g; s/^ *//; s/ *\$//")
	[ -n "$SERVERS" ] || exit 1
}
if has_server opensmtpd; then
	if ! why=$(osd_fetch); then
		drop_server opensmtpd "$why"
	else
		mk_maildirs "$OSDMAIL" nobody:nogroup
		why=$(osd_init "$T/osd" "$P_opensmtpd" "$OSDMAIL" nobody) ||
		    drop_server opensmtpd "bad smtpd.conf: $(echo $why)"
	fi
fi

start_server() {
	case $1 in
	ours-l)
		in_cg ours-l smtpd-lite -q -c "$C" -l 127.0.0.1:$P_ours_l 2>"$T/ours-l.log" &
		wait_port 127.0.0.1 $P_ours_l ;;
	ours-tcp)
		in_cg ours-tcp tcpserver -R -H -l localhost -b 1000 -c 1000 127.0.0.1 $P_ours_tcp \
		    smtpd-lite -q -c "$C" 2>"$T/ours-tcp.log" &
		wait_port 127.0.0.1 $P_ours_tcp ;;
	postfix)
		script -qc "postfix -c $T/pf/etc check" /dev/null >"$T/pf/check.log" 2>&1
		[ ! -s "$T/pf/check.log" ] || { cat "$T/pf/check.log"; return 1; }
		in_cg postfix script -qc "postfix -c $T/pf/etc start" /dev/null >>"$T/pf/check.log" 2>&1
		wait_port 127.0.0.1 $P_postfix ;;
	opensmtpd)
		in_cg opensmtpd unshare -m sh -c "$OSD_NS" sh "$T/osd" "$OSD_ROOT" >"$T/osd/smtpd.log" 2>&1 &
		wait_port 127.0.0.1 $P_opensmtpd ;;
	esac
}
port_of() { eval echo "\$P_$(echo "$1" | tr - _)"; }
mail_of() { case $1 in postfix) echo "$PFMAIL" ;; opensmtpd) echo "$OSDMAIL" ;; *) echo "$OURMAIL" ;; esac; }

for s in $SERVERS; do
	start_server $s && continue
	[ $s = opensmtpd ] || { echo "cannot start $s"; exit 1; }
	for p in $(cg_pids $s); do kill "$p" 2>/dev/null; done
	drop_server $s "not listening: $(grep -v '^info:' "$T/osd/smtpd.log" 2>/dev/null | tail -2 | tr '\n' ' ' | sed 's/ *$//')"
done

# ---- memory per idle session ----
cat >"$T/idle.py" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
def rd(f):
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    if not rd(f).startswith(b"220"): sys.exit("no greeting")
    s.sendall(b"EHLO idle.test\r\n")
    if not rd(f).startswith(b"250"): sys.exit("no EHLO reply")
    conns.append((s, f))
print("ready", flush=True)
sys.stdin.readline()
for s, f in conns:
    s.sendall(b"QUIT\r\n"); rd(f); s.close()
PY
# mem_sum SERVER SKIP: "PSS_KiB RSS_KiB NPROC" over the cgroup's processes
# whose name is not SKIP (a regex)
mem_sum() {
	for p in $(cg_pids $1); do
		n=$(cat /proc/$p/comm 2>/dev/null) || continue
		echo "$n" | grep -Eq "^($2)\$" && continue
		awk -v n="$n" '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {print p+0, r+0}' /proc/$p/smaps_rollup 2>/dev/null
	done | awk '{p+=$1; r+=$2; k++} END {print p+0, r+0, k+0}'
}
# session processes: ours: smtpd-lite sessions, relaycheck, ruleproc;
# Postfix: smtpd. Idle ones left from earlier sessions are not baseline.
# OpenSMTPD: none (event-driven: its fixed processes, all named smtpd,
# hold every session; the baseline is all of them before).
sess_re() {
	case $1 in
	postfix) echo "smtpd" ;;
	opensmtpd) echo "NONE" ;;
	*) echo "smtpd-lite|relaycheck|ruleproc" ;;
	esac
}
# ours-l: the fixed processes (listener, session server, policy and
# chain servers and their idle chain workers), without the session
# workers: those (children of the session server, whose command line has
# a "--") are what a connected session costs, idle ones left from an
# earlier round included (they are reused, not new)
ours_fixed_mem() {
	for p in $(cg_pids ours-l); do
		pp=$(awk '/^PPid:/ {print $2}' /proc/$p/status 2>/dev/null) || continue
		if [ "$(cat /proc/$p/comm 2>/dev/null)" = smtpd-lite ] &&
		    tr '\0' '\n' </proc/$pp/cmdline 2>/dev/null | grep -qx -- '--'; then
			continue
		fi
		awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {print p+0, r+0}' /proc/$p/smaps_rollup 2>/dev/null
	done | awk '{p+=$1; r+=$2; k++} END {print p+0, r+0, k+0}'
}
idle_mem() {	# SERVER -> "PSS_per_session RSS_per_session"
	s=$1
	case $s in
	ours-l) base=$(ours_fixed_mem) ;;
	*) base=$(mem_sum $s "$(sess_re $s)") ;;
	esac
	mkfifo "$T/go.$s"
	python3 "$T/idle.py" "$(port_of $s)" $IDLE <"$T/go.$s" >"$T/idle.$s" 2>&1 &
	ipid=$!
	exec 3>"$T/go.$s"
	i=0
	while ! grep -q ready "$T/idle.$s" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
	sleep 0.5
	all=$(mem_sum $s "NONE")
	echo >&3; exec 3>&-; wait $ipid
	rm -f "$T/go.$s"
	grep -q ready "$T/idle.$s" || { echo "idle sessions failed on $s: $(cat "$T/idle.$s")" >&2; echo "- -"; return; }
	set -- $base; bp=$1 br=$2
	set -- $all
	echo "$(( ($1 - bp) / IDLE )) $(( ($2 - br) / IDLE ))"
}

med() {	# median min max of the arguments (numbers)
	[ $# -gt 0 ] || { echo "- - -"; return; }
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
		if (NR == 0) { print "- - -"; exit }
		m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
		print m, a[1], a[NR] }'
}

echo "pipeline: smtpd-lite + ruleproc + deliver vs Postfix $(postconf -d -h mail_version 2>/dev/null)$(
    has_server opensmtpd && echo " and $(osd_version) (listen backlog $([ "$OSD_BACKLOG" -gt 0 ] 2>/dev/null && echo "$OSD_BACKLOG, shim" || echo "5, as shipped"))")"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(df -T "$T" | awk 'NR==2 {print $2}') on $(df "$T" | awk 'NR==2 {print $1}')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "N=$N messages a run, REPS=$REPS, one message per connection; rows S:C:R = $ROWS"
echo

echo "== memory per idle session ($IDLE sessions after EHLO), KiB, median of $REPS"
for s in $SERVERS; do eval "MP_$(echo $s | tr - _)=''; MR_$(echo $s | tr - _)=''"; done
r=0
while [ $r -lt "$REPS" ]; do
	for s in $SERVERS; do
		set -- $(idle_mem $s)
		v=$(echo $s | tr - _)
		eval "MP_$v=\"\$MP_$v $1\"; MR_$v=\"\$MR_$v $2\""
	done
	r=$((r + 1))
done
printf '%-9s %16s %16s\n' server "PSS/session" "RSS/session"
for s in $SERVERS; do
	v=$(echo $s | tr - _)
	pm=$(eval med \$MP_$v)
	rm_=$(eval med \$MR_$v)
	eval "PSS_$v=$(echo $pm | cut -d' ' -f1)"
	printf '%-9s %16s %16s\n' $s "$(echo $pm | awk '{printf "%d (%d-%d)", $1, $2, $3}')" \
	    "$(echo $rm_ | awk '{printf "%d (%d-%d)", $1, $2, $3}')"
done
echo

# ---- fsync limit ----
fs_limit() {	# SIZE WRITERS -> files/s
	rm -rf "$T/fsl"
	sync
	"$TOOL" fsync "$T/fsl" "$FS_N" "$1" "$2" | awk '{print $3}'
}

# ---- throughput ----
# The last run's files are moved aside, not deleted (they go with the
# temp dir at the end): ext4 without a journal checks each inode freed
# in the last 30 s (recently_deleted) when it allocates one, and after
# thousands of deletions the next run's file creations cost several
# times as much (perf: find_inode_bit), whichever server runs next.
clear_mail() {
	mkdir -p "$T/junk"
	for u in u 2u 3u 4u 5u; do
		for d in new tmp; do
			[ -d "$1/$u/$d" ] || continue
			j=$(mktemp -d "$T/junk/XXXXXX") && mv "$1/$u/$d" "$j/" &&
			    mkdir "$1/$u/$d" && chown --reference="$j/$d" "$1/$u/$d" &&
			    chmod --reference="$j/$d" "$1/$u/$d" ||
			    { echo "cannot move $1/$u/$d aside" >&2; exit 1; }
		done
	done
	sync
}
# one_run SERVER S C R -> "msgs/s cpu_s_per_1000 status"
one_run() {
	s=$1 S=$2 Cc=$3 R=$4
	m=$(mail_of $s)
	clear_mail "$m"
	dirs="$m/u"
	i=2; while [ $i -le "$R" ]; do dirs="$dirs $m/${i}u"; i=$((i + 1)); done
	c0=$(cpu_ns $s)
	out=$("$TOOL" drive $((N * R)) "$TIMEOUT" $dirs -- \
	    smtp-source -4 -s "$Cc" -m "$N" -l "$S" -r "$R" -f sender@client.test \
	    -t u@bench.test -M client.test 127.0.0.1:$(port_of $s) 2>"$T/src.err")
	c1=$(cpu_ns $s)
	set -- $out
	got=$1 secs=$2 st=$3
	status=ok
	[ "$st" = 0 ] || status="client-exit-$st"
	for d in $dirs; do
		nf=$(find "$d/new" -type f | wc -l)
		ni=$(find "$d/new" -type f -exec grep -h -m1 -i '^Message-Id:' {} + | sort -u | wc -l)
		[ "$nf" -lt "$N" ] && status="LOST($nf/$N)"
		[ "$nf" -gt "$N" ] && status="DUPLICATED($nf/$N)"
		[ "$ni" -ne "$N" ] && [ "$status" = ok ] && status="IDS($ni/$N)"
	done
	[ "$status" = ok ] || { echo "$s S=$S C=$Cc R=$R: $status; client: $(head -3 "$T/src.err")" >&2; }
	awk -v n="$N" -v t="$secs" -v c0="$c0" -v c1="$c1" -v st="$status" \
	    'BEGIN {printf "%.1f %.3f %s\n", n / t, (c1 - c0) / 1e9 / n * 1000, st}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 > 0) printf "%.2f", a/b; else print "-"}'; }
# with OpenSMTPD: two more columns, msg/s and CPU over its medians
if has_server opensmtpd; then
	FMT='%-14s %-9s %18s %16s %9s %9s %10s %9s %10s %10s %s\n'
	printf "$FMT" "row S/C/R" server "delivered msg/s" "CPU s/1000 msg" "x postfix" \
	    "x limit" "cpu x pf" "x osd" "cpu x osd" "limit/s" "lost/dup"
else
	FMT='%-14s %-9s %18s %16s %9s %9s %10s %10s %s\n'
	printf "$FMT" "row S/C/R" server "delivered msg/s" "CPU s/1000 msg" "x postfix" \
	    "x limit" "cpu x pf" "limit/s" "lost/dup"
fi
ALLOK=1
for row in $ROWS; do
	IFS=: read S Cc R <<EOF
$row
EOF
	R_postfix='' U_postfix='' R_opensmtpd='' U_opensmtpd=''
	for s in $SERVERS; do v=$(echo $s | tr - _); eval "R_$v=''; U_$v=''; ST_$v=ok"; done
	lim=''
	r=0
	while [ $r -lt "$REPS" ]; do
		# rotate the order run by run
		order=$(echo $SERVERS | awk -v k=$r '{for (i = 0; i < NF; i++) printf "%s ", $(1 + (i + k) % NF)}')
		for s in $order; do
			set -- $(one_run $s $S $Cc $R)
			v=$(echo $s | tr - _)
			eval "R_$v=\"\$R_$v $1\"; U_$v=\"\$U_$v $2\""
			[ "$3" = ok ] || { eval "ST_$v=\$3"; ALLOK=0; }
		done
		lim="$lim $(fs_limit $S $Cc)"
		r=$((r + 1))
	done
	set -- $(med $lim); limm=$1
	set -- $(med $R_postfix); pfm=$1
	set -- $(med $U_postfix); pfc=$1
	set -- $(med $R_opensmtpd); osm=$1
	set -- $(med $U_opensmtpd); osc=$1
	for s in $SERVERS; do
		v=$(echo $s | tr - _)
		set -- $(eval med \$R_$v); rm_=$1 rmin=$2 rmax=$3
		set -- $(eval med \$U_$v); cm=$1 cmin=$2 cmax=$3
		set -- "${S}/${Cc}/${R}" $s "$(printf '%.0f (%.0f-%.0f)' $rm_ $rmin $rmax)" \
		    "$(printf '%.2f (%.2f-%.2f)' $cm $cmin $cmax)" \
		    "$(ratio $rm_ $pfm)" "$(ratio $rm_ $limm)" "$(ratio $cm $pfc)"
		has_server opensmtpd && set -- "$@" "$(ratio $rm_ $osm)" "$(ratio $cm $osc)"
		printf "$FMT" "$@" "$(printf '%.0f' $limm)" "$(eval echo \$ST_$v)"
	done
done
echo
echo "fsync limit, 1 writer: 2 KiB $(fs_limit 2048 1)/s, 64 KiB $(fs_limit 65536 1)/s (pipeline-tool fsync, $FS_N files)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "columns: medians (min-max) of $REPS runs; 'x limit' = delivered/s over the fsync limit with C writers"
has_server opensmtpd && echo "'x osd', 'cpu x osd': msg/s and CPU over OpenSMTPD's (as 'x postfix', 'cpu x pf' over Postfix's)"
echo "command per run: smtp-source -4 -s C -m $N -l S -r R -f sender@client.test -t u@bench.test -M client.test 127.0.0.1:PORT"
[ $ALLOK = 1 ] || { echo "SOME RUNS LOST OR DUPLICATED MAIL (see above)"; exit 1; }
exit 0
