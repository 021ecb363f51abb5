# relaycheck: decisions from a shell and in policy mode; never an open relay.
. "$TOP/t/lib.sh"
newconf
C=$T/conf
rcheck() { relaycheck -c "$C" "$@" 2>/dev/null; }

is "$(rcheck 127.0.0.1)" "accept" "allowed client"
is "$(rcheck 127.0.0.3)" "reject 554 5.7.1 You are listed as a source of spam" "denied client, table text"
is "$(rcheck 192.0.2.77)" "reject 554 5.7.1 Documentation network, not a mail client" "denied by prefix"
is "$(rcheck 2001:db8:ffff::1)" "reject 554 5.7.1 Access denied" "IPv6 prefix, default text"
is "$(rcheck ::ffff:127.0.0.3)" "reject 554 5.7.1 You are listed as a source of spam" "IPv4-mapped IPv6 treated as IPv4"
is "$(rcheck 198.51.100.1)" "accept" "unlisted client: access_default allow"

r() { rcheck 127.0.0.1 '<>' "$1" | tail -n 1; }	# an ordinary client
rr() { rcheck 127.0.0.2 '<>' "$1" | tail -n 1; }	# a relay client
is "$(r '<alice@example.com>')" accept "local mailbox"
is "$(r '<ALICE@Example.COM>')" accept "case-insensitive"
is "$(r '<alice+news@example.com>')" accept "extension reaches the mailbox"
is "$(r '<sales@example.com>')" accept "alias"
is "$(r '<anything@example.org>')" accept "catch-all"
is "$(r '<nobody@example.com>')" "reject 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown" "unknown local user 550 5.1.1"
is "$(r '<x@backup.example>')" accept "backup MX domain accepted"
is "$(r '<x@elsewhere.test>')" "reject 554 5.7.1 <x@elsewhere.test>: Relay access denied" "foreign domain: relaying denied"
is "$(rr '<x@elsewhere.test>')" accept "relay client may relay"
is "$(RELAYCLIENT= relaycheck -c "$C" 127.0.0.1 '<>' '<x@elsewhere.test>' 2>/dev/null | tail -n 1)" accept "RELAYCLIENT grants relaying"

# every address trick stays closed for an ordinary client
for a in '<x%elsewhere.test@example.com>' '<elsewhere.test!x@example.com>' \
    '<@example.com:x@elsewhere.test>' '<@example.com,@example.org:x@elsewhere.test>' \
    '<"x@elsewhere.test"@example.com>' '<"x@elsewhere.test">' '<x@elsewhere.test.>' \
    '<x@ELSEWHERE.test>' '<x@[192.0.2.1]>' '<x@[127.0.0.1]>' '<x@example.com@elsewhere.test>' \
    '<x@elsewhere.test (example.com)>' '<x@example.com.elsewhere.test>' '<x@sub.example.com>' \
    '<x@elsewhere.test%example.com>' '<x@example.com>elsewhere.test' 'x@elsewhere.test' \
    '<x@elsewhere.test>  ' '<x@localhost>' '<"postmaster">'; do
	v=$(r "$a")
	case $v in
	accept) echo "not ok - relay trick $a was accepted" ;;
	"reject 5"*) echo "ok - relay trick $a refused ($v)" ;;
	*) echo "not ok - relay trick $a: unexpected '$v'" ;;
	esac
done
# the local side of the same tricks: delivered locally or refused, never relayed
is "$(r '<alice%elsewhere.test@example.com>')" "reject 550 5.1.1 <alice%elsewhere.test@example.com>: Recipient address rejected: User unknown" "percent hack is a local part"
is "$(r '<"x@elsewhere.test"@example.org>')" accept "quoted local part at a catch-all domain stays local"
is "$(r '<alice@example.com.>')" accept "trailing dot on a local domain"
is "$(r '<postmaster>')" accept "bare <postmaster> (RFC 5321 4.5.1) is postmaster@hostname"
is "$(r '<Postmaster>')" accept "bare <Postmaster>, any case"
sed -i '/^postmaster@mx.example.com/d' "$C/mailboxes"; mkcdb -q -c "$C" mailboxes
like "$(r '<postmaster>')" "^reject 550 5.1.1 <postmaster@mx.example.com>" "bare <postmaster> without a mailbox for the host name: 550"

# exit codes
rcheck 127.0.0.1 '<>' '<alice@example.com>' >/dev/null; is "$?" 0 "all accepted: exit 0"
rcheck 127.0.0.1 '<>' '<alice@example.com>' '<x@elsewhere.test>' >/dev/null; is "$?" 100 "some rejected: exit 100"
is "$(rcheck 127.0.0.1 'bad sender' | sed -n 2p)" "reject 553 5.1.7 Bad sender address syntax" "bad sender"
like "$(relaycheck -v -c "$C" 127.0.0.1 '<>' '<bob@example.com>' 2>&1 >/dev/null)" "mailboxes line 9 \(bob@example.com\)" "-v names the table line"
like "$(relaycheck -v -c "$C" 127.0.0.2 2>&1 >/dev/null)" "access line 9 \(127.0.0.2/32\) relay" "-v names the access line"

# policy mode: Postfix protocol, persistent, pipelined
req() { printf 'request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\nhelo_name=h\nsender=%s\nrecipient=%s\nunknown_future_attribute=x\n\n' "$@"; }
out=$( { req CONNECT 127.0.0.1 '' ''; req RCPT 127.0.0.1 '' alice@example.com; req RCPT 127.0.0.1 a@b.c x@elsewhere.test;
	req RCPT 127.0.0.2 a@b.c x@elsewhere.test; req RCPT 127.0.0.3 '' alice@example.com; req RCPT 127.0.0.1 '' nobody@example.com;
	req MAIL 127.0.0.1 'bad address' ''; } | relaycheck -p -c "$C")
is "$(echo "$out" | grep -c '^action=')" 7 "one answer per request"
is "$(echo "$out" | grep '^action=' | tr '\n' '|')" "action=DUNNO|action=DUNNO|action=554 5.7.1 <x@elsewhere.test>: Relay access denied|action=OK|action=554 5.7.1 You are listed as a source of spam|action=550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown|action=553 5.1.7 Bad sender address syntax|" "policy answers"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.0.0.1\nrecipient=x@elsewhere.test\nsasl_username=alice\n\n' | relaycheck -p -c "$C")
is "$out" "action=OK" "authenticated client may relay"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address=127.0.0.1\nmx_stages=query\n\n' | relaycheck -p -c "$C")
is "$(echo "$out" | tr '\n' '|')" "action=DUNNO|mx_stages=rcpt|" "mx_stages=query (smtpd-lite at CONNECT): asked again at RCPT only"
out=$(printf 'request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address=127.0.0.3\nmx_stages=query\n\n' | relaycheck -p -c "$C")
is "$(echo "$out" | tr '\n' '|')" "action=554 5.7.1 You are listed as a source of spam|mx_stages=rcpt|" "... beside a reject too"
out=$(printf 'garbage line\n\n' | relaycheck -p -c "$C" 2>/dev/null); rc=$?
is "$out:$rc" ":100" "malformed request: no answer, disconnect"

# a rebuild takes effect without restart, in a running policy process
python3 - "$C" >"$T/policy.out" <<'PY'
import subprocess, sys, time, os
c = sys.argv[1]
p = subprocess.Popen(["relaycheck", "-p", "-c", c], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def ask(rcpt):
    p.stdin.write("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.0.0.1\nrecipient=%s\n\n" % rcpt)
    p.stdin.flush()
    a = p.stdout.readline().strip(); p.stdout.readline()
    return a
print(ask("newuser@example.com"))
with open(os.path.join(c, "mailboxes"), "a") as f: f.write("newuser@example.com newuser/\n")
subprocess.run(["mkcdb", "-q", "-c", c, "mailboxes"], check=True)
print(ask("newuser@example.com"))
p.stdin.close(); p.wait()
PY
is "$(sed -n 1p "$T/policy.out")" "action=550 5.1.1 <newuser@example.com>: Recipient address rejected: User unknown" "before the rebuild"
is "$(sed -n 2p "$T/policy.out")" "action=DUNNO" "long-lived policy process sees the rebuilt table"

# fail closed: missing or corrupt tables defer, never accept or relay
cp "$C/domains.cdb" "$T/domains.save"
rm "$C/domains.cdb"
is "$(rcheck 127.0.0.2 '<>' '<x@elsewhere.test>' | tail -n 1)" "defer 451 4.3.0 Temporary lookup failure, try again later" "missing table: defer even for a relay client"
rcheck 127.0.0.1 >/dev/null; is "$?" 111 "missing table: exit 111"
head -c 100 "$T/domains.save" >"$C/domains.cdb"
is "$(rcheck 127.0.0.1 '<>' '<alice@example.com>' | tail -n 1)" "defer 451 4.3.0 Temporary lookup failure, try again later" "truncated table: defer"
cp "$T/domains.save" "$C/domains.cdb"
cp "$C/settings" "$T/settings.good"
echo "max_recipients zero" >>"$C/settings"
is "$(rcheck 127.0.0.1)" "defer 451 4.3.0 Configuration error" "broken settings: defer"
cp "$T/settings.good" "$C/settings"

# longest prefix wins, IPv4 and IPv6, /0 to full length
cat >"$C/access" <<'ACC'
0.0.0.0/0      deny  v4 zero
10.0.0.0/8     allow
10.1.0.0/16    deny  sixteen
10.1.2.0/24    relay
10.1.2.3       deny  host
::/0           allow
2001:db8::/32  deny  thirtytwo
2001:db8:1::/48 allow
2001:db8:1:2::7/128 deny host6
ACC
mkcdb -q -c "$C" access
is "$(rcheck 192.0.2.1)" "reject 554 5.7.1 v4 zero" "/0 entry catches everything else"
is "$(rcheck 10.9.9.9)" accept "/8"
is "$(rcheck 10.1.9.9)" "reject 554 5.7.1 sixteen" "/16 beats /8"
is "$(rcheck 10.1.2.9 '<>' '<x@elsewhere.test>' | tail -n 1)" accept "/24 relay beats /16"
is "$(rcheck 10.1.2.3)" "reject 554 5.7.1 host" "/32 beats /24"
is "$(rcheck 2001:db8:ffff::1)" "reject 554 5.7.1 thirtytwo" "IPv6 /32"
is "$(rcheck 2001:db8:1:3::1)" accept "IPv6 /48 beats /32"
is "$(rcheck 2001:db8:1:2::7)" "reject 554 5.7.1 host6" "IPv6 /128"
is "$(rcheck 2001:db8:1:2::8)" accept "IPv6 neighbour of a /128"
is "$(rcheck fe80::1)" accept "IPv6 ::/0"

# relay_by: which relay methods count (IP, AUTH, either)
cp "$TOP/conf/access" "$C/access"; mkcdb -q -c "$C" -f
pol() {	# client sasl_user -> action
	printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=%s\nrecipient=x@elsewhere.test\nsasl_username=%s\n\n' "$1" "$2" |
	    relaycheck -p -c "$C" | head -n 1
}
is "$(pol 127.0.0.2 '') $(pol 127.0.0.1 alice)" "action=OK action=OK" "relay_by ip-or-auth (default): either method"
echo "relay_by auth" >>"$C/settings"
is "$(pol 127.0.0.2 '') $(pol 127.0.0.1 alice)" "action=554 5.7.1 <x@elsewhere.test>: Relay access denied action=OK" "relay_by auth: a relay address alone is not enough"
is "$(RELAYCLIENT= relaycheck -c "$C" 127.0.0.1 '<>' '<x@elsewhere.test>' 2>/dev/null | tail -n 1)" "reject 554 5.7.1 <x@elsewhere.test>: Relay access denied" "relay_by auth: RELAYCLIENT alone is not enough"
sed -i 's/^relay_by auth$/relay_by ip/' "$C/settings"
is "$(pol 127.0.0.2 '') $(pol 127.0.0.1 alice)" "action=OK action=554 5.7.1 <x@elsewhere.test>: Relay access denied" "relay_by ip: AUTH alone is not enough"
sed -i 's/^relay_by ip$/relay_by sometimes/' "$C/settings"
is "$(rcheck 127.0.0.1)" "defer 451 4.3.0 Configuration error" "bad relay_by: defer"
sed -i '/^relay_by/d' "$C/settings"
