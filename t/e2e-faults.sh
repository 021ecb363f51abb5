# End to end, faults: deliver SIGKILLed at points of a delivery behind
# smtpd-lite (451, nothing partial in new/); a full mail filesystem (451,
# nothing lost of what was accepted before).
. "$TOP/t/lib.sh"
if [ ! -x "$BIN/smtpd-lite" ]; then skip "smtpd-lite not built yet"; exit 0; fi
newconf
chmod -R a+rX "$T/conf"
mkdir -p "$T/mail/alice/new" "$T/mail/alice/cur" "$T/mail/alice/tmp"; chmod -R 777 "$T/mail"

# the chain: deliver, killed after a delay read from a file
cat >"$T/killer.sh" <<EOF
#!/bin/sh
d=\$(cat "$T/delay")
exec 3<&0
"$BIN/deliver" -c "$T/conf" <&3 3<&- &
p=\$!
sleep "\$d"
kill -9 \$p 2>/dev/null
wait \$p
EOF
chmod 755 "$T/killer.sh"
echo "chain /bin/sh $T/killer.sh" >>"$T/conf/settings"
echo 0 >"$T/delay"; chmod 644 "$T/delay"

port=$(free_port)
smtpd-lite -c "$T/conf" -l "127.0.0.1:$port" 2>"$T/smtpd.log" &
bg_pid $!
wait_port 127.0.0.1 "$port" || { echo "not ok - smtpd-lite listens"; exit 1; }

head -c 6000000 /dev/urandom | base64 -w 76 >"$T/body"
python3 - "$port" "$T/body" "$T/mail/alice/new" "$T/delay" >"$T/kill.out" <<'EOF'
import os, smtplib, sys
port, body, new, delayf = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
msg = b"Subject: kill\r\n\r\n" + open(body, "rb").read().replace(b"\n", b"\r\n")
accepted = deferred = 0
for d in ("0", "0.002", "0.005", "0.01", "0.015", "0.02", "0.03", "0.04", "0.06", "5"):
    open(delayf, "w").write(d)
    s = smtplib.SMTP("127.0.0.1", port, timeout=120)
    try:
        s.sendmail("k@example.net", ["alice@example.com"], msg)
        accepted += 1
        print("delay %s: 250" % d)
    except smtplib.SMTPDataError as e:
        deferred += 1
        print("delay %s: %d %s" % (d, e.smtp_code, e.smtp_error.decode()))
    s.quit()
print("accepted %d deferred %d" % (accepted, deferred))
EOF
# check_files: n = files in alice's new/, bad = those that do not end
# with the whole body (our trace headers, then the message: complete)
check_files() {
	bad=0 n=0
	for f in "$T"/mail/alice/new/*; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		tail -c "$(stat -c %s "$T/body")" "$f" | cmp -s - "$T/body" || bad=$((bad + 1))
	done
}
check_files
acc=$(sed -n 's/^accepted \([0-9]*\) .*/\1/p' "$T/kill.out")
def=$(sed -n 's/.* deferred \([0-9]*\)$/\1/p' "$T/kill.out")
is "$bad" 0 "SIGKILL at 10 points behind smtpd-lite: no partial file in new/ ($n complete)"
like "$(grep -c ': 451 ' "$T/kill.out")" '^([1-9]|10)$' "killed deliveries are answered 451"
ok "every 250 has its file (at least once)" test "$n" -ge "${acc:-99}"
is "$(grep -c ': 5[0-9][0-9] ' "$T/kill.out")" 0 "a kill is never a permanent failure"
is "$((acc + def))" 10 "10 attempts answered"
grep '^delay' "$T/kill.out" | sed 's/^/# /'

# The same through the fork servers (the default chain, reused deliver
# workers): the busy deliver worker SIGKILLed at points of a delivery.
kill $(echo $_pids) 2>/dev/null; _pids=
sed -i '/^chain /d' "$T/conf/settings"
rm -f "$T"/mail/alice/new/*
port=$(free_port)
smtpd-lite -c "$T/conf" -l "127.0.0.1:$port" 2>"$T/smtpd3.log" &
bg_pid $!
wait_port 127.0.0.1 "$port" || { echo "not ok - smtpd-lite listens"; exit 1; }
chain=$(sed -n 's/.*fork server chain started, pid \([0-9]*\).*/\1/p' "$T/smtpd3.log")
dsrv=$(pgrep -P "$chain" -x deliver | head -n 1)
if [ -z "$dsrv" ]; then
	echo "not ok - fork servers: the deliver server under the chain server"
else
	python3 - "$port" "$T/body" "$dsrv" >"$T/kill2.out" <<'PY'
import os, signal, smtplib, sys, threading, time
port, body, dsrv = int(sys.argv[1]), sys.argv[2], sys.argv[3]
msg = b"Subject: kill\r\n\r\n" + open(body, "rb").read().replace(b"\n", b"\r\n")
def workers():
    try:
        return [int(p) for p in open("/proc/%s/task/%s/children" % (dsrv, dsrv)).read().split()]
    except OSError:
        return []
def busy(p):
    try:
        return "memfd" in os.readlink("/proc/%d/fd/0" % p) or "spool" in os.readlink("/proc/%d/fd/0" % p)
    except OSError:
        return False
accepted = deferred = 0
for d in (0.0, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, None):
    res = {}
    def send():
        s = smtplib.SMTP("127.0.0.1", port, timeout=120)
        try:
            s.sendmail("k@example.net", ["alice@example.com"], msg)
            res["r"] = "250"
        except smtplib.SMTPDataError as e:
            res["r"] = "%d %s" % (e.smtp_code, e.smtp_error.decode())
        s.quit()
    t = threading.Thread(target=send)
    t.start()
    if d is not None:
        # wait for the message to reach a deliver worker, then kill it
        end = time.time() + 30
        while time.time() < end and t.is_alive():
            b = [p for p in workers() if busy(p)]
            if b:
                time.sleep(d)
                for p in b:
                    try: os.kill(p, signal.SIGKILL)
                    except OSError: pass
                break
            time.sleep(0.0005)
    t.join()
    r = res.get("r", "none")
    if r == "250": accepted += 1
    else: deferred += 1
    print("delay %s: %s" % (d, r))
print("accepted %d deferred %d" % (accepted, deferred))
PY
	check_files
	acc=$(sed -n 's/^accepted \([0-9]*\) .*/\1/p' "$T/kill2.out")
	is "$bad" 0 "fork servers, deliver worker SIGKILLed at 7 points: no partial file in new/ ($n complete)"
	like "$(grep -c ': 451 ' "$T/kill2.out")" '^[1-7]$' "fork servers: killed deliveries are answered 451"
	ok "fork servers: every 250 has its file (at least once)" test "$n" -ge "${acc:-99}"
	is "$(grep -c ': 5[0-9][0-9] ' "$T/kill2.out")" 0 "fork servers: a kill is never a permanent failure"
	like "$(grep 'delay None' "$T/kill2.out")" ': 250$' "fork servers: the next message after the kills is delivered"
	grep '^delay' "$T/kill2.out" | sed 's/^/# /'
fi

# a full mail filesystem (root: a small tmpfs)
kill $(echo $_pids) 2>/dev/null; _pids=
if [ "$(id -u)" = 0 ] && mkdir -p "$T/small" && mount -t tmpfs -o size=2m,mode=0777 tmpfs "$T/small" 2>/dev/null; then
	trap 'umount "$T/small" 2>/dev/null; cleanup' EXIT
	sed -i -e '/^chain /d' -e "s|^mailroot .*|mailroot $T/small/mail|" -e "s|^queuedir .*|queuedir $T/small/queue|" "$T/conf/settings"
	mkdir -p "$T/small/mail"; chmod 777 "$T/small/mail"
	port=$(free_port)
	smtpd-lite -c "$T/conf" -l "127.0.0.1:$port" 2>"$T/smtpd2.log" &
	bg_pid $!
	wait_port 127.0.0.1 "$port" || { echo "not ok - smtpd-lite listens"; exit 1; }
	python3 - "$port" "$T/small/mail" <<'EOF'
import os, smtplib, sys
port, mail = int(sys.argv[1]), sys.argv[2]
def send(to, msg):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        s.sendmail("f@example.net", to, msg)
        return 250, ""
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.quit()
def count(box):
    d = os.path.join(mail, box, "new")
    return len(os.listdir(d)) if os.path.isdir(d) else 0
small = b"Subject: small\r\n\r\nfits\r\n"
code, _ = send(["alice@example.com"], small)
print(("ok" if code == 250 else "not ok") + " - full-disk setup: a small message is accepted")
big = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 40000
code, text = send(["alice@example.com", "bob@example.com"], big)
print(("ok" if code == 451 or code == 452 else "not ok") + " - mail filesystem full: %d (temporary), %s" % (code, text))
print(("ok" if count("alice") == 1 and count("bob") == 0 else "not ok") + " - full disk: nothing partial, the earlier message still there")
tmp = os.path.join(mail, "alice", "tmp")
print(("ok" if not os.listdir(tmp) else "not ok") + " - full disk: tmp/ left clean")
code, _ = send(["alice@example.com"], small)
print(("ok" if code == 250 and count("alice") == 2 else "not ok") + " - after the failure, small mail is delivered again")
EOF
	kill $(echo $_pids) 2>/dev/null; _pids=
	sleep 0.2
	umount "$T/small"
else
	skip "full filesystem test needs root and tmpfs"
fi
