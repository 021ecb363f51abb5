# End to end: real clients (Python smtplib, swaks) over TCP to smtpd-lite's
# own listener and under tcpserver; smtpd-lite -> relaycheck -> deliver;
# the Maildirs checked byte for byte; 50 sessions x 1000 messages.
. "$TOP/t/lib.sh"
if [ ! -x "$BIN/smtpd-lite" ]; then skip "smtpd-lite not built yet"; exit 0; fi
newconf
sed -i -e 's/^max_per_ip .*/max_per_ip 100/' -e 's/^max_connections .*/max_connections 200/' "$T/conf/settings"
chmod -R a+rX "$T/conf"
# the Maildirs the tests look at, made by the server's user
for b in alice bob carol catchall eve; do mkdir -p "$T/mail/$b/new" "$T/mail/$b/cur" "$T/mail/$b/tmp"; done
chmod -R 777 "$T/mail"

port=$(free_port)
smtpd-lite -c "$T/conf" -l "127.0.0.1:$port" 2>"$T/smtpd.log" &
bg_pid $!
if ! wait_port 127.0.0.1 "$port"; then
	echo "not ok - smtpd-lite -l listens"; cat "$T/smtpd.log" | sed 's/^/#   /' | tail; exit 1
fi
echo "ok - smtpd-lite -l 127.0.0.1:$port listens"

python3 "$TOP/t/e2e-smtp.py" "$port" "$T/mail" basic

# swaks as the client
rm -f "$T"/mail/*/new/*
if command -v swaks >/dev/null; then
	swaks --server 127.0.0.1 --port "$port" --from x@example.net --to carol@example.com \
	    --header "Subject: swaks" --body "from swaks" >"$T/swaks.out" 2>&1
	like "$(grep -E '^<- +250 .*(Ok|queued)' "$T/swaks.out" | tail -n 1)" '250' "swaks: 250 after DATA"
	f=$(ls "$T"/mail/carol/new/* 2>/dev/null | head -n 1)
	ok "swaks: delivered to carol" test -n "$f"
	ok "swaks: body intact" grep -q '^from swaks$' "$f"
	swaks --server 127.0.0.1 --port "$port" --from x@example.net --to nosuch@example.com \
	    --quit-after RCPT >"$T/swaks.out" 2>&1
	like "$(grep -E '^<\*\* +550' "$T/swaks.out")" '550 5\.1\.1' "swaks: unknown user 550 5.1.1 at RCPT"
else
	skip "swaks not installed"
fi

# 50 parallel sessions, 1000 messages: exactly 1000 delivered
python3 "$TOP/t/e2e-smtp.py" "$port" "$T/mail" load 1000 50

# the same server under tcpserver
if command -v tcpserver >/dev/null; then
	port2=$(free_port)
	tcpserver -R -H 127.0.0.1 "$port2" smtpd-lite -c "$T/conf" 2>"$T/tcpserver.log" &
	bg_pid $!
	if wait_port 127.0.0.1 "$port2"; then
		python3 "$TOP/t/e2e-smtp.py" "$port2" "$T/mail" basic | sed 's/^\(n*o*t* *ok - \)/\1tcpserver: /'
		python3 "$TOP/t/e2e-smtp.py" "$port2" "$T/mail" load 200 20 | sed 's/^\(n*o*t* *ok - \)/\1tcpserver: /'
	else
		echo "not ok - tcpserver listens"
	fi
else
	skip "tcpserver (ucspi-tcp) not installed"
fi
