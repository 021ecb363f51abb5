# mxqueue: MX routing with a real DNS server on loopback (dnsmasq from
# Debian's dnsmasq-base, serving a test zone; the resolver's server comes
# from the nameserver setting): MX preference order and fallback, the
# implicit MX (A), AAAA, null MX, NXDOMAIN, routes naming a host for MX
# look-up, and backup MX: MX hosts that are ourselves (by name or by
# address) and every less preferred one are skipped.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/queue.sh"
if [ ! -x "$BIN/mxqueue" ]; then skip "mxqueue not built"; exit 0; fi
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
if [ ! -x "$DNSMASQ" ]; then skip "dnsmasq not installed (apt-get install dnsmasq-base)"; exit 0; fi
qconf
DP=$(free_port)
P=$(free_port)
qset "nameserver 127.0.0.1:$DP"
qset "smtp_port $P"
"$DNSMASQ" --keep-in-foreground --port="$DP" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --no-poll --conf-file=/dev/null --pid-file= --user=root \
    --local=/test/ --log-facility="$T/dns.log" \
    --mx-host=mx.test,a.mx.test,10 --mx-host=mx.test,b.mx.test,20 \
    --host-record=a.mx.test,127.0.0.11 --host-record=b.mx.test,127.0.0.12 \
    --host-record=nomx.test,127.0.0.14 \
    --mx-host=six.test,v6.six.test,10 --host-record=v6.six.test,::1 \
    --dns-rr=nullmx.test,15,000000 --host-record=nullmx.test,127.0.0.19 \
    --mx-host=bk.test,prim.bk.test,10 --mx-host=bk.test,mx.example.com,20 \
    --mx-host=bk.test,third.bk.test,30 \
    --host-record=prim.bk.test,127.0.0.15 --host-record=mx.example.com,127.0.0.16 \
    --host-record=third.bk.test,127.0.0.18 \
    --mx-host=self.test,me.self.test,10 --mx-host=self.test,other.self.test,20 \
    --host-record=me.self.test,127.0.0.1 --host-record=other.self.test,127.0.0.17 \
    --mx-host=best.test,mx.example.com,5 --mx-host=best.test,b.mx.test,50 \
    2>"$T/dnsmasq.err" &
bg_pid $!
i=0
until python3 -c "
import socket,struct,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.3)
q=struct.pack('>HHHHHH',1,0x100,1,0,0,0)+b'\x02mx\x04test\x00'+struct.pack('>HH',15,1)
s.sendto(q,('127.0.0.1',$DP)); s.recv(512)" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 50 ] && break; sleep 0.1
done
if [ $i -gt 50 ]; then echo "not ok - dnsmasq answers"; sed 's/^/#   /' "$T/dnsmasq.err"; exit 1; fi
echo "ok - dnsmasq serves the test zone on 127.0.0.1:$DP"

sink a 127.0.0.11 "$P"
sink b 127.0.0.12 "$P"

# MX order: the preference-10 host gets it
qadd bob@example.com u1@mx.test
qrun
is "$(nmsg a)/$(nmsg b)" "1/0" "MX 10 before MX 20"
like "$(cat "$T/a/log" | tr -d '\r' | grep '^EHLO')" 'EHLO mx.example.com' "the sink at a.mx.test got our EHLO"

# MX 10 down: MX 20 takes it
sink_stop a
qadd bob@example.com u2@mx.test
qrun
is "$(nmsg b)" 1 "MX 10 down: the MX 20 host"
is "$(qn)" 0 "delivered, nothing queued"

# both down: queued, 4.4.1; the next try finds one up
sink_stop b
qadd bob@example.com u3@mx.test
qrun
is "$(qn)" 1 "every MX down: queued"
like "$(grep '^rcpt' "$Q"/info/* | cut -f 12)" '^4\.4\.1 cannot connect to b\.mx\.test\[127\.0\.0\.12\]' "reply names the last MX host tried"
sink b 127.0.0.12 "$P"
sleep 2.1; qrun	# retry_max is 2 s: due by now
is "$(nmsg b)" 2 "retry: delivered to the MX host that came back"

# implicit MX: no MX records, the domain's A record
sink n 127.0.0.14 "$P"
qadd bob@example.com u4@nomx.test
qrun
is "$(nmsg n)" 1 "no MX: the domain's own address (A)"

# AAAA: a host with only an IPv6 address (::1 is ours, so an MX that
# points there is skipped as ourselves; a [host] route is not)
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
	sink v6 ::1 "$P"
	qadd bob@example.com u5@six.test
	qrun
	is "$(nmsg v6)" 0 "MX host at ::1 (our address): skipped as ourselves"
	like "$(grep '^rcpt' "$Q"/info/* | cut -f 12)" '^4\.4\.6 ' "... 4.4.6, held"
	mxqueue -c "$C" remove $(ls "$Q/info") >/dev/null 2>&1
	echo "six.test [v6.six.test]" >"$C/routes"
	mkcdb -c "$C" >/dev/null
	qadd bob@example.com u5@six.test
	qrun
	is "$(nmsg v6)" 1 "route [host] with an AAAA record only: delivered over IPv6"
	rm -f "$C/routes" "$C/routes.cdb"
else
	skip "no IPv6 loopback"
fi

# null MX: permanent at once (5.1.10), the sender gets a bounce
rm -f "$M"/bob/new/*
qadd bob@example.com u6@nullmx.test
qrun
is "$(qn)" 0 "null MX: not queued for retries"
like "$(grep -h '^Status:' "$M"/bob/new/* 2>/dev/null)" '^Status: 5\.1\.10$' "null MX: bounced 5.1.10"

# NXDOMAIN: permanent (5.1.2)
rm -f "$M"/bob/new/*
qadd bob@example.com u7@nosuch.test
qrun
like "$(grep -h '^Status:' "$M"/bob/new/* 2>/dev/null)" '^Status: 5\.1\.2$' "NXDOMAIN: bounced 5.1.2"

# a route naming a host without brackets: that host's MX records
echo "viaroute.example mx.test" >"$C/routes"
mkcdb -c "$C" >/dev/null
qadd bob@example.com u8@viaroute.example
qrun
is "$(nmsg b)" 3 "route 'DOMAIN host': MX look-up of host"
rm -f "$C/routes" "$C/routes.cdb"

# backup MX: we are MX 20 of bk.test (hostname mx.example.com); the
# primary (MX 10) is down: held, never sent to ourselves or to MX 30
sink self 127.0.0.16 "$P"
sink third 127.0.0.18 "$P"
qadd bob@example.com u9@bk.test
qrun
is "$(nmsg self)/$(nmsg third)" "0/0" "backup MX: nothing to ourselves (MX 20) nor to MX 30"
is "$(qn)" 1 "backup MX, primary down: held in the queue"
like "$(grep '^rcpt' "$Q"/info/* | cut -f 12)" 'prim\.bk\.test' "the primary was tried"
sink prim 127.0.0.15 "$P"
sleep 2.1; qrun	# retry_max is 2 s: due by now
is "$(nmsg prim)" 1 "primary back: delivered to it"
is "$(qn)" 0 "and the entry is gone"

# ourselves by address: MX 10 resolves to 127.0.0.1 (our interface)
sink other 127.0.0.17 "$P"
qadd bob@example.com u10@self.test
qrun
is "$(nmsg other)" 0 "an MX host with our address: it and the less preferred ones skipped"
like "$(grep '^rcpt' "$Q"/info/* | cut -f 12)" '^4\.4\.6 mail for self\.test loops back to myself' "4.4.6 loops back to myself (kept, not bounced)"
mxqueue -c "$C" remove $(ls "$Q/info") >/dev/null 2>&1

# we are the best MX by name: never sent to the MX 50 host
n0=$(nmsg b)
qadd bob@example.com u11@best.test
qrun
is "$(nmsg b)" "$n0" "best MX is ourselves: the worse one is not used"
like "$(grep '^rcpt' "$Q"/info/* | cut -f 12)" '^4\.4\.6 ' "best MX ourselves: 4.4.6, held"
