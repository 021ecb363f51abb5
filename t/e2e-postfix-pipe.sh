# deliver as Postfix's pipe(8) MDA (doc/deliver.8 EXAMPLES): a private
# Postfix hands mail for example.com to `deliver -x`; delivered, unknown
# user bounced (67), unwritable Maildir deferred (75), never lost.
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/postfix.sh"
if ! command -v postfix >/dev/null; then skip "postfix not installed (make deps installs it)"; exit 0; fi
if [ "$(id -u)" != 0 ]; then skip "a private postfix instance needs root here"; exit 0; fi
newconf
chmod -R a+rX "$T/conf"
for b in alice bob; do mkdir -p "$T/mail/$b/new" "$T/mail/$b/cur" "$T/mail/$b/tmp"; done
chown -R nobody "$T/mail"
chmod 500 "$T/mail/bob/new"		# bob's delivery fails temporarily

port=$(free_port)
pf_init "$T/pf" "$port"
trap 'pf_stop; cleanup' EXIT
pf_master "mx unix - n n - - pipe user=nobody argv=$BIN/deliver -x -c $T/conf -f \${sender} \${recipient}"
pf_conf "relay_domains = example.com"
pf_conf "transport_maps = inline:{ example.com=mx: }"
pf_conf "mx_destination_recipient_limit = 1"
pf_conf "smtpd_relay_restrictions = permit_auth_destination, reject"
pf_conf "notify_classes ="
ok "private postfix with deliver as its pipe transport starts" pf_start

python3 - "$port" <<'EOF'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.sendmail("pf@example.net", ["alice@example.com", "nosuch@example.com", "bob@example.com"],
           b"Subject: via postfix\r\n\r\nthrough pipe(8)\r\n")
s.quit()
EOF
i=0
while [ $i -lt 100 ]; do
	grep -q 'to=<alice@example.com>.*status=sent' "$T/pf/maillog" 2>/dev/null &&
	    grep -q 'to=<nosuch@example.com>.*status=bounced' "$T/pf/maillog" 2>/dev/null &&
	    grep -q 'to=<bob@example.com>.*status=deferred' "$T/pf/maillog" 2>/dev/null && break
	sleep 0.1; i=$((i + 1))
done
f=$(ls "$T"/mail/alice/new/* 2>/dev/null | head -n 1)
ok "postfix -> deliver: alice's message in alice/new" test -n "$f"
ok "the body arrived intact" grep -qx 'through pipe(8)' "$f"
is "$(grep -c '^Return-Path:' "$f")" 1 "one Return-Path"
like "$(grep 'to=<alice@example.com>' "$T/pf/maillog")" 'status=sent' "postfix: alice status=sent"
like "$(grep 'to=<nosuch@example.com>' "$T/pf/maillog")" 'status=bounced.*5\.1\.1' "postfix: unknown user bounced (exit 67, 5.1.1)"
like "$(grep 'to=<bob@example.com>' "$T/pf/maillog" | head -n 1)" 'status=deferred.*4\.' "postfix: unwritable Maildir deferred (exit 75)"
is "$(ls "$T"/mail/bob/new | wc -l | tr -d ' ')" 0 "nothing partial in bob/new"
