# relaycheck as a real Postfix's policy service (spawn(8), check_policy_service).
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/postfix.sh"
if ! command -v postfix >/dev/null; then
	skip "postfix not installed (make deps installs them)"; exit 0
fi
newconf
chmod -R a+rX "$T/conf"
port=$(free_port)
pf_init "$T/pf" "$port"
trap 'pf_stop; cleanup' EXIT
pf_master "policy unix - n n - 0 spawn user=nobody argv=$BIN/relaycheck -p -c $T/conf"
pf_conf "policy_time_limit = 3600"
# relaycheck decides; reject_unauth_destination is the backstop Postfix insists on
pf_conf "relay_domains = example.com example.org example.net backup.example"
pf_conf "smtpd_relay_restrictions = check_policy_service unix:private/policy, reject_unauth_destination"
pf_conf "smtpd_recipient_restrictions ="
ok "private postfix starts" pf_start

rcpt() {	# client-ip rcpt -> the reply to RCPT TO
	python3 - "$port" "$1" "$2" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), source_address=(sys.argv[2], 0), timeout=20)
s.ehlo("client.test")
s.mail("a@b.example")
code, msg = s.rcpt(sys.argv[3])
print(code, msg.decode())
s.quit()
PY
}
like "$(rcpt 127.0.0.1 alice@example.com)" "^250 " "postfix+relaycheck: local mailbox accepted"
like "$(rcpt 127.0.0.1 nobody@example.com)" "^550 5.1.1 .*User unknown" "postfix+relaycheck: unknown user 550 5.1.1"
like "$(rcpt 127.0.0.1 x@elsewhere.test)" "^554 5.7.1 .*Relay access denied" "postfix+relaycheck: relay denied"
like "$(rcpt 127.0.0.2 x@elsewhere.test)" "^250 " "postfix+relaycheck: relay client accepted"
like "$(rcpt 127.0.0.3 alice@example.com)" "^554 5.7.1 .*source of spam" "postfix+relaycheck: denied client"
