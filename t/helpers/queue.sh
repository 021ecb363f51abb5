# t/helpers/queue.sh: helpers for the queue tests (t/queue-*.sh).
# Source it after t/lib.sh.
#   qconf                newconf plus second-scale retry settings; sets C, Q, M
#   qset "name value"    add or replace a settings line
#   sink NAME IP PORT [opts]   start t/queue-sink.py, output in $T/NAME
#   sink_stop NAME       stop that sink (only the one we started)
#   nmsg NAME            messages the sink NAME took
#   qn                   entries in the queue
#   qrun                 one pass of the runner (mxqueue run -1), log in $T/run.log
#   qadd SENDER RCPT...  queue the message in $T/m through deliver
#   wait_for "SHELL CODE"  eval it until it succeeds, for up to 15 s
qconf() {
	newconf
	C=$T/conf Q=$T/queue M=$T/mail
	qset "retry_min 1s"
	qset "retry_max 2s"
	qset "queue_scan 1s"
	qset "smtp_timeout_connect 2"
	chmod -R a+rX "$T/conf"
	printf 'From: bob@example.com\nTo: x@elsewhere.test\nSubject: queue test\n\nline one\n.leading dot\n..two dots\n.\nlast line\n' >"$T/m"
}
qset() {
	_k=${1%% *}
	sed -i "/^$_k /d" "$C/settings"
	echo "$1" >>"$C/settings"
}
sink() {
	_n=$1 _ip=$2 _p=$3; shift 3
	python3 "$TOP/t/queue-sink.py" "$_ip" "$_p" "$T/$_n" "$@" 2>>"$T/$_n.err" &
	bg_pid $!
	eval "SINKPID_$_n=$!"
	wait_port "$_ip" "$_p"
}
sink_stop() {
	eval "_p=\${SINKPID_$1:-}"
	[ -n "$_p" ] && kill "$_p" 2>/dev/null && wait "$_p" 2>/dev/null
	eval "SINKPID_$1="
	return 0
}
nmsg() { ls "$T/$1" 2>/dev/null | grep -c '^msg\.'; }
qn() { ls "$Q/info" 2>/dev/null | wc -l | tr -d ' '; }
qrun() { mxqueue -c "$C" run -1 >>"$T/run.log" 2>&1; }
qadd() {
	_s=$1; shift
	deliver -c "$C" -f "$_s" "$@" <"$T/m" 2>>"$T/deliver.log"
}
wait_for() {
	_i=0
	while [ $_i -lt 150 ]; do
		eval "$1" >/dev/null 2>&1 && return 0
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}
