# End to end with a real mail reader: messages sent over SMTP to
# smtpd-lite, delivered by deliver, read back through a private Dovecot
# (POP3 and IMAP on loopback, static passdb, mail_location = our
# Maildirs): the same bytes we sent, plus our trace headers.
. "$TOP/t/lib.sh"
if [ ! -x "$BIN/smtpd-lite" ]; then skip "smtpd-lite not built yet"; exit 0; fi
if ! command -v dovecot >/dev/null; then skip "dovecot not installed (make deps installs it)"; exit 0; fi
if [ "$(id -u)" != 0 ]; then skip "a private dovecot instance needs root here"; exit 0; fi
newconf
chmod -R a+rX "$T/conf"

port=$(free_port) pop=$(free_port) imap=$(free_port)
D=$T/dovecot
mkdir -p "$D/run" "$D/home"
chmod 755 "$D" "$D/run"
chmod 777 "$D/home"
cat >"$D/dovecot.conf" <<EOF
base_dir = $D/run
state_dir = $D/state
log_path = $D/log
instance_name = mxtest-$$
protocols = pop3 imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$T/mail/%n
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
passdb {
  driver = static
  args = password=secret
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$D/home/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $pop
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
service stats {
  unix_listener stats-reader {
    mode = 0600
  }
  unix_listener stats-writer {
    mode = 0600
  }
}
pop3_uidl_format = %08Xu%08Xv
EOF
mkdir -p "$D/state"
dovecot -c "$D/dovecot.conf" -F 2>"$D/stderr" &
dpid=$!
bg_pid $dpid
stop_dovecot() { kill $dpid 2>/dev/null; wait $dpid 2>/dev/null; }
trap 'stop_dovecot; cleanup' EXIT
if ! wait_port 127.0.0.1 "$imap" || ! wait_port 127.0.0.1 "$pop"; then
	echo "not ok - private dovecot starts"
	sed 's/^/#   /' "$D/stderr" "$D/log" 2>/dev/null | tail -n 20
	exit 1
fi
echo "ok - private dovecot listens on 127.0.0.1:$pop (POP3) and :$imap (IMAP)"

smtpd-lite -c "$T/conf" -l "127.0.0.1:$port" 2>"$T/smtpd.log" &
bg_pid $!
wait_port 127.0.0.1 "$port" || { echo "not ok - smtpd-lite listens"; exit 1; }

python3 - "$port" "$pop" "$imap" "$T/mail" <<'EOF'
import imaplib, os, poplib, smtplib, sys
port, pop, imap, mail = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def ok(c, what, detail=""):
    print(("ok - " if c else "not ok - ") + what)
    if not c and detail:
        for l in repr(detail)[:600].split("\\n")[:8]:
            print("#   " + l)

msgs = [
    b"From: a@example.net\nTo: alice@example.com\nSubject: first\n\nHello Alice.\n",
    b"From: a@example.net\nTo: alice@example.com\nSubject: dots and bytes\n\n.\n..dots\n"
    + "8-bit \u00e4\u00f6\u00fc\n".encode() + b"x" * 998 + b"\n",
]
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
for m in msgs:
    s.sendmail("a@example.net", ["alice@example.com"], m.replace(b"\n", b"\r\n"))
s.quit()
new = os.path.join(mail, "alice", "new")
stored = sorted((os.path.join(new, f) for f in os.listdir(new)), key=os.path.getmtime)
ok(len(stored) == 2, "two messages delivered to alice/new")
files = {}
for f in stored:
    data = open(f, "rb").read()
    for m in msgs:
        if data.endswith(m):
            files[m] = data
ok(len(files) == 2, "each Maildir file ends with the message as sent")

# POP3: the exact bytes (poplib undoes the dot-stuffing and line ends)
p = poplib.POP3("127.0.0.1", pop, timeout=30)
p.user("alice")
p.pass_("secret")
n, size = p.stat()
ok(n == 2, "POP3: STAT shows 2 messages", (n, size))
got = []
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    got.append(b"\n".join(lines) + b"\n")
p.quit()
for m in msgs:
    ok(any(g == files.get(m) for g in got), "POP3 RETR returns the stored bytes: %s" % m.split(b"\n")[2].decode(),
       [g[:200] for g in got])
    ok(any(g.endswith(m) and g.startswith(b"Return-Path: <a@example.net>\nDelivered-To: alice@example.com\n") for g in got),
       "POP3: what we sent, after Return-Path/Delivered-To/Received")

# IMAP: BODY.PEEK[] of each message
c = imaplib.IMAP4("127.0.0.1", imap)
c.login("alice", "secret")
typ, data = c.select("INBOX")
ok(typ == "OK" and int(data[0]) == 2, "IMAP: INBOX has 2 messages", data)
got = []
for i in (1, 2):
    typ, d = c.fetch(str(i), "(BODY.PEEK[])")
    got.append(d[0][1].replace(b"\r\n", b"\n"))
for m in msgs:
    ok(any(g == files.get(m) for g in got), "IMAP FETCH BODY[] returns the stored bytes: %s" % m.split(b"\n")[2].decode())
typ, d = c.fetch("1:2", "(RFC822.SIZE)")
c.logout()
ok(typ == "OK", "IMAP: RFC822.SIZE works with our ,S= names", d)
EOF
