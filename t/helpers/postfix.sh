# t/helpers/postfix.sh: a private Postfix instance for tests and benchmarks.
# Source it after t/lib.sh.
#   pf_init DIR PORT    write DIR/etc/{main,master}.cf: smtpd on 127.0.0.1:PORT,
#                       no chroot, queue and logs under DIR, nothing delivered
#                       locally; add settings with pf_conf
#   pf_conf "name = value"   set in main.cf (postconf -e)
#   pf_master "line"         append to master.cf
#   pf_start / pf_stop       start and stop the instance (pf_stop runs at exit too)
pf_init() {
	PF=$1 PF_PORT=$2
	mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
	sed -e 's/^\(smtp *inet.*\)$/#\1/' \
	    -e 's/^\([a-z][-a-z]* *\(unix\|inet\|fifo\|pass\|unix-dgram\) *[-ny] *[-ny] *\)y/\1n/' \
	    /etc/postfix/master.cf >"$PF/etc/master.cf"
	echo "127.0.0.1:$PF_PORT inet n - n - - smtpd" >>"$PF/etc/master.cf"
	cat >"$PF/etc/main.cf" <<EOC
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.test
mydomain = pf.test
myorigin = pf.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = /tmp, /var, /dev/stdout
maillog_file = $PF/maillog
smtpd_banner = \$myhostname ESMTP
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
anvil_rate_time_unit = 60s
smtp_host_lookup = native
disable_dns_lookups = yes
EOC
	chown -R postfix "$PF/data"
}
pf_conf() { postconf -c "$PF/etc" -e "$1"; }
pf_master() { echo "$1" >>"$PF/etc/master.cf"; }
pf_start() {
	script -qc "postfix -c $PF/etc check" /dev/null >"$PF/check.log" 2>&1; [ ! -s "$PF/check.log" ] || { cat "$PF/check.log"; return 1; }
	script -qc "postfix -c $PF/etc start" /dev/null >>"$PF/check.log" 2>&1 || { cat "$PF/check.log"; return 1; }
	wait_port 127.0.0.1 "$PF_PORT"
}
pf_stop() {
	[ -n "${PF:-}" ] && [ -f "$PF/etc/main.cf" ] && postfix -c "$PF/etc" stop >/dev/null 2>&1
	PF=
}
