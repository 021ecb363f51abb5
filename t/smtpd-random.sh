#!/bin/sh
# smtpd-lite: the DATA reader against a reference model, on random texts
# made of the characters that matter (CR, LF, '.', NUL, 'a'). Each text
# is sent in random-sized writes; the reply and the stored bytes must be
# what RFC 5321 (with our bare CR/LF and NUL rules) says.
. "$(dirname "$0")/lib.sh"
. "$TOP/t/fixtures/smtpd-common.sh"
smtpd_setup "max_errors 1000" "timeout_data 3" "timeout_command 3"
export T NOSEEK=1
cat >"$T/rand.py" <<'PY'
import os, random, socket, subprocess, sys, time
seed = int(os.environ.get("SEED", time.time()))
rnd = random.Random(seed)
a, b = socket.socketpair()
env = dict(os.environ, TCPREMOTEIP="127.0.0.1")
p = subprocess.Popen(sys.argv[1:], stdin=b, stdout=b, stderr=open(os.environ["T"] + "/log", "a"), env=env)
b.close()
f = a.makefile("rb")
def reply():
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l.decode("latin-1").rstrip("\r\n")
def model(body):
    for i, c in enumerate(body):
        if c == 13 and body[i + 1:i + 2] != b"\n": return "554 5.5.2", None
        if c == 10 and (i == 0 or body[i - 1] != 13): return "554 5.5.2", None
    if b"\0" in body: return "554 5.6.0", None
    lines = body.split(b"\r\n") if body else [b""]
    lines = [l[1:] if l.startswith(b".") else l for l in lines]
    return "250 2.0.0", b"\n".join(lines) + b"\n"
reply(); a.sendall(b"EHLO r.test\r\n"); reply()
bad = 0
acc = 0
N = int(os.environ.get("N", 300))
LONG = os.environ.get("LONG")
for n in range(N):
    while True:
        k = rnd.choice([0, 1, 3, 8, 30, 200])
        if LONG:    # long plain runs between the characters that matter
            body = b"".join(rnd.choice([b"a", b".", b"\r\n", b"\r\n.", b"\r", b"\n", b"\0",
                b"x" * rnd.randint(1, 3000)]) for _ in range(k // 4 + 1))
        else:
            body = bytes(rnd.choice(b"a.\r\n\r\n.\0a") for _ in range(k))
        if (b"\r\n" + body + b"\r\n.\r\n").find(b"\r\n.\r\n") == len(body) + 2:
            break
    a.sendall(b"MAIL FROM:<r@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    reply(); reply(); r354 = reply()
    data = body + b"\r\n.\r\n"
    i = 0
    while i < len(data):
        j = i + rnd.randint(1, 2000 if LONG else 7)
        a.sendall(data[i:j]); i = j
    got = reply()
    want, text = model(body)
    ok = r354.startswith("354") and got.startswith(want)
    if ok and text is not None:
        acc += 1
        mxid = got.split()[-1]
        stored = open(os.path.join(os.environ["T"], "out", mxid + ".msg"), "rb").read()
        stored = stored.split(b"\n", 3)[3]
        ok = stored == text
    if not ok:
        bad += 1
        if bad < 5:
            print("# seed %d body %r: got %r want %r" % (seed, body, got, want))
a.sendall(b"QUIT\r\n"); reply(); p.wait()
print("%d %d %d %d" % (N, bad, seed, acc))
PY
res=$(python3 "$T/rand.py" smtpd-lite -c "$T/conf" $CHAIN "$T/out")
echo "$res" | grep '^#'
set -- $(echo "$res" | tail -1) x x x x
is "$2" 0 "${1} random DATA texts ($4 accepted; SEED=$3): replies and stored bytes match the model"
res=$(LONG=1 N=150 python3 "$T/rand.py" smtpd-lite -c "$T/conf" $CHAIN "$T/out")
echo "$res" | grep '^#'
set -- $(echo "$res" | tail -1) x x x x
is "$2" 0 "${1} random DATA texts with long plain runs ($4 accepted; SEED=$3): as the model"
is "$(ls "$T/spool" | wc -l)" 0 "spool directory left empty"
