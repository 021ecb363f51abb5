# RFC 5321 4.5.1: RCPT TO:<postmaster> without a domain is accepted and
# reaches postmaster@HOSTNAME (the sample maps it to alice).
. "$TOP/t/lib.sh"
if [ ! -x "$BIN/smtpd-lite" ]; then skip "smtpd-lite not built yet"; exit 0; fi
newconf
rm -f "$T/conf/rules"	# only the path from RCPT to the Maildir matters here
chmod -R a+rX "$T/conf"
mkdir -p "$T/mail/alice/new" "$T/mail/alice/cur" "$T/mail/alice/tmp"
chmod -R 777 "$T/mail"
port=$(free_port)
smtpd-lite -c "$T/conf" -l "127.0.0.1:$port" 2>"$T/smtpd.log" &
bg_pid $!
wait_port 127.0.0.1 "$port" || { echo "not ok - listener"; exit 1; }
out=$(python3 - "$port" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("client.test")
s.mail("someone@example.net")
print(s.rcpt("<postmaster>")[0], end=" ")
print(s.data(b"Subject: to the postmaster\r\n\r\nhello\r\n")[0])
s.quit()
PY
)
is "$out" "250 250" "RCPT TO:<postmaster> and DATA accepted"
f=$(ls "$T"/mail/alice/new/* 2>/dev/null | head -n 1)
ok "delivered to the postmaster's mailbox (alice)" test -n "$f"
ok "Delivered-To names postmaster@hostname" grep -q '^Delivered-To: postmaster@mx.example.com' "$f"
