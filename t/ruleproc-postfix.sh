# ruleproc -m under a real, private Postfix (smtpd_milters) delivering
# into Maildirs: the rules' effects must show in the delivered mail. The
# same rules also serve Postfix as a policy service (spawn, -p).
. "$TOP/t/lib.sh"
. "$TOP/t/helpers/postfix.sh"
if ! command -v postfix >/dev/null || [ "$(id -u)" != 0 ]; then
	skip "needs postfix (make deps) and root for a private instance"; exit 0
fi
newconf
C=$T/conf
cat >"$C/rules" <<'EOF'
rule "Gone"
    recipient gone@example.com
    reject 550 5.1.1 "Gone for good"
rule "Night"
    recipient night@example.com
    tempfail 451 4.3.2 "Sleeping, try later"
rule "Executables"
    attachment *.exe
    reject 550 5.7.1 "No executables here"
rule "Mark"
    add-header X-Rules checked
    continue
rule "Junk"
    header Subject *viagra*
    tag-subject [SPAM]
    folder Junk
    continue
rule "Dave has left"
    recipient dave@example.com
    redirect bob@example.com
rule "Archive sales"
    recipient sales@example.com
    copy archive@example.com
rule "Silent"
    sender *@junk.example
    discard
EOF
chmod -R a+rX "$T/conf"
S=$T/milter.sock
ruleproc -m "unix:$S" -c "$C" 2>"$T/milter.log" &
bg_pid $!
i=0; while [ ! -S "$S" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
chmod 666 "$S"
port=$(free_port)
pf_init "$T/pf" "$port"
trap 'pf_stop; cleanup' EXIT
V=$T/vmail
mkdir -p "$V"
chown nobody "$V"
for u in alice bob dave sales archive night carol gone; do echo "$u@example.com example.com/$u/"; done >"$T/vmaps"
pf_conf "virtual_mailbox_domains = example.com"
pf_conf "virtual_mailbox_base = $V"
pf_conf "virtual_mailbox_maps = texthash:$T/vmaps"
pf_conf "virtual_uid_maps = static:$(id -u nobody)"
pf_conf "virtual_gid_maps = static:$(id -g nobody)"
pf_conf "smtpd_milters = unix:$S"
pf_conf "milter_default_action = tempfail"
pf_conf "milter_protocol = 6"
pf_master "rulepolicy unix - n n - 0 spawn user=nobody argv=$BIN/ruleproc -p -c $C"
pf_conf "rulepolicy_time_limit = 3600"
pf_conf "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/rulepolicy"
ok "private postfix starts with ruleproc as its milter" pf_start

send() { # from rcpt... < message ; prints the replies
	cat >"$T/send.msg"
	python3 - "$port" "$T/send.msg" "$@" <<'PY'
import smtplib, sys
port, frm, rcpts = int(sys.argv[1]), sys.argv[3], sys.argv[4:]
msg = open(sys.argv[2]).read()
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("client.test")
code, m = s.mail(frm); print("MAIL", code, m.decode())
ok = 0
for r in rcpts:
    code, m = s.rcpt(r); print("RCPT", r, code, m.decode()); ok += code == 250
if ok:
    code, m = s.data(msg.encode()); print("DATA", code, m.decode())
s.quit()
PY
}
mailbox() { # user: the delivered files, after waiting for the queue
	i=0
	while [ $i -lt 100 ]; do
		ls "$V/example.com/$1/new/" 2>/dev/null | grep -q . && break
		sleep 0.1; i=$((i + 1))
	done
	cat "$V/example.com/$1/new/"* 2>/dev/null
}

o=$(printf 'From: x@example.net\nSubject: cheap viagra\n\nhello\n' | send x@example.net alice@example.com)
like "$o" "DATA 250" "tagged message accepted"
m=$(mailbox alice)
like "$m" "Subject: \[SPAM\] cheap viagra" "delivered mail: subject tagged"
like "$m" "X-Rules: checked" "delivered mail: header added"
like "$m" "X-Rules-Folder: <alice@example.com> Junk" "delivered mail: folder as a header"

o=$(printf 'Subject: hello\n\nfor dave\n' | send x@example.net dave@example.com)
like "$(mailbox bob)" "for dave" "redirect: dave's mail delivered to bob"
sleep 0.3
is "$(ls "$V/example.com/dave/new/" 2>/dev/null | wc -l)" 0 "redirect: nothing for dave"

o=$(printf 'Subject: order\n\nplease quote\n' | send x@example.net sales@example.com)
like "$(mailbox sales)" "please quote" "copy: sales gets it"
like "$(mailbox archive)" "please quote" "copy: archive gets it too"

o=$(printf 'Subject: x\n\nx\n' | send x@example.net gone@example.com)
like "$o" "RCPT gone@example.com 550 5.1.1 <gone@example.com>: Recipient address rejected: Gone for good" "policy service (spawn) rejects at RCPT in Postfix's words"

o=$(printf 'Subject: x\n\nx\n' | send x@example.net night@example.com)
like "$o" "RCPT night@example.com 451 4.3.2 .*Sleeping, try later" "tempfail at RCPT with the rule's reply (policy service first)"

o=$(printf 'Subject: invoice\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream; name="invoice.exe"\nContent-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--b--\n' | send x@example.net carol@example.com)
like "$o" "DATA 550 5.7.1 No executables here" "executable rejected at end of data with the rule's reply"
is "$(ls "$V/example.com/carol/new/" 2>/dev/null | wc -l)" 0 "rejected: nothing delivered"

o=$(printf 'Subject: junk\n\njunk\n' | send spam@junk.example carol@example.com)
like "$o" "DATA 250" "discard: the client sees 250"
sleep 1
is "$(ls "$V/example.com/carol/new/" 2>/dev/null | wc -l)" 0 "discard: nothing delivered"
like "$(cat "$T/pf/maillog" 2>/dev/null)" "milter-discard" "discard: postfix logged the milter discard"
pf_stop
