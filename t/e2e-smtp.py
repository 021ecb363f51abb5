#!/usr/bin/env python3
"""End-to-end checks through a real SMTP server (smtpd-lite -> deliver).

usage: e2e-smtp.py PORT MAILROOT [basic|load N SESSIONS]
Prints "ok - ..." / "not ok - ..." lines (t/run counts them)."""
import os
import smtplib
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
MAIL = sys.argv[2]
MODE = sys.argv[3] if len(sys.argv) > 3 else "basic"
OURS = (b"return-path:", b"delivered-to:", b"received:")


def ok(cond, what, detail=""):
    print(("ok - " if cond else "not ok - ") + what)
    if not cond and detail:
        for line in str(detail).splitlines()[:10]:
            print("#   " + line)
    sys.stdout.flush()


def files(box, folder=""):
    d = os.path.join(MAIL, box, folder, "new")
    try:
        return sorted(os.path.join(d, f) for f in os.listdir(d))
    except FileNotFoundError:
        return []


def clear():
    for box in os.listdir(MAIL):
        for sub in ("new", "cur"):
            d = os.path.join(MAIL, box, sub)
            if os.path.isdir(d):
                for f in os.listdir(d):
                    os.unlink(os.path.join(d, f))


def stored_message(path):
    """The message as stored, without the header lines we (and smtpd-lite)
    put in front: Return-Path, Delivered-To, Received (with folds)."""
    data = open(path, "rb").read()
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        line = data[pos:nl + 1]
        if line.lower().startswith(OURS) or (pos > 0 and line[:1] in (b" ", b"\t")):
            pos = nl + 1
            continue
        break
    return data, data[pos:]


def crlf(msg):
    """LF lines (as stored) -> CRLF lines (as on the wire)."""
    return msg.replace(b"\n", b"\r\n")


def send(frm, to, msg, **kw):
    s = smtplib.SMTP("127.0.0.1", PORT, timeout=30)
    try:
        return s.sendmail(frm, to, crlf(msg), **kw)
    finally:
        try:
            s.quit()
        except Exception:
            pass


def raw_session(lines):
    """Speak SMTP by hand; returns the replies (one string per reply)."""
    c = socket.create_connection(("127.0.0.1", PORT), 10)
    f = c.makefile("rb")

    def reply():
        out = []
        while True:
            ln = f.readline()
            if not ln:
                return " ".join(out)
            out.append(ln.decode("latin-1").rstrip())
            if ln[3:4] != b"-":
                return " ".join(out)
    replies = [reply()]
    for ln in lines:
        c.sendall(ln)
        replies.append(reply())
    c.close()
    return replies


def basic():
    clear()
    msg = b"From: a@example.net\nTo: alice@example.com\nSubject: once\n\nexactly once\n"
    send("a@example.net", ["alice@example.com"], msg)
    fs = files("alice")
    ok(len(fs) == 1, "one message to alice: exactly one file", fs)
    if fs:
        data, body = stored_message(fs[0])
        ok(body == msg, "stored message equals what was sent (after our trace headers)", data[:400])
        ok(data.startswith(b"Return-Path: <a@example.net>\nDelivered-To: alice@example.com\n"),
           "Return-Path and Delivered-To in front", data[:200])

    # Bcc: the envelope decides, never the headers
    clear()
    msg = b"From: a@example.net\nTo: alice@example.com\nCc: carol@example.com\nSubject: bcc\n\nbcc\n"
    send("a@example.net", ["bob@example.com"], msg)
    ok(len(files("bob")) == 1, "Bcc recipient (only in the envelope) gets it")
    ok(len(files("alice")) == 0 and len(files("carol")) == 0,
       "addresses only in To:/Cc: get nothing")

    clear()
    send("a@example.net", ["alice@example.com", "bob@example.com"], b"Subject: two\n\ntwo\n")
    ok(len(files("alice")) == 1 and len(files("bob")) == 1, "two recipients: one copy each")

    clear()
    try:
        send("a@example.net", ["alice@example.com", "alice@example.com", "ALICE@example.com"],
             b"Subject: twice\n\ntwice\n")
    except smtplib.SMTPException as e:
        print("#   " + repr(e))
    ok(len(files("alice")) == 1, "the same recipient twice: one copy", files("alice"))

    clear()
    send("a@example.net", ["sales@example.com"], b"Subject: list\n\nlist\n")
    ok(len(files("alice")) == 1 and len(files("bob")) == 1, "alias fan-out sales -> alice, bob")

    clear()
    send("a@example.net", ["random.person@example.org"], b"Subject: catchall\n\ncatch\n")
    ok(len(files("catchall")) == 1, "catch-all domain")

    try:
        send("a@example.net", ["nosuch@example.com"], b"Subject: x\n\nx\n")
        ok(False, "unknown user refused at RCPT")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["nosuch@example.com"]
        ok(code == 550 and text.startswith(b"5.1.1"), "unknown user: 550 5.1.1 at RCPT", e)

    # dot-stuffing round trip, 8-bit, 998-octet lines
    clear()
    msg = (b"Subject: dots\n\n.\n..\n...leading dots\n. space\nend.\n.\n" + b"x" * 998 + b"\n"
           + "8-bit: \u00e4\u00f6\u00fc \u20ac\n".encode("utf-8") + b"\xff\xfe raw high bytes\n")
    s = smtplib.SMTP("127.0.0.1", PORT, timeout=30)
    s.ehlo()
    s.sendmail("a@example.net", ["alice@example.com"], crlf(msg), mail_options=["BODY=8BITMIME"])
    s.quit()
    fs = files("alice")
    want = msg
    if fs:
        data, body = stored_message(fs[0])
        ok(body == want, "dot-stuffing, 998-octet line, 8-bit bytes: byte for byte", body[:300])
    else:
        ok(False, "dot-stuffing message delivered")

    # no final newline: SMTP adds the CRLF before the final dot, nothing else
    clear()
    r = raw_session([b"EHLO t\r\n", b"MAIL FROM:<a@example.net>\r\n", b"RCPT TO:<alice@example.com>\r\n",
                     b"DATA\r\n", b"Subject: nofinal\r\n\r\nno final newline\r\n.\r\n", b"QUIT\r\n"])
    fs = files("alice")
    ok(any(x.startswith("250") for x in r[-2:]) and len(fs) == 1, "message without a final newline accepted", r)
    if fs:
        data, body = stored_message(fs[0])
        ok(body == b"Subject: nofinal\n\nno final newline\n", "no final newline: stored as sent plus the line end SMTP requires", body)

    # null sender
    clear()
    send("", ["bob@example.com"], b"Subject: bounce\n\nnull sender\n")
    fs = files("bob")
    ok(len(fs) == 1 and open(fs[0], "rb").read().startswith(b"Return-Path: <>\n"),
       "null sender: delivered with Return-Path: <>")

    # a forward ends in the queue, not lost
    clear()
    send("a@example.net", ["dave@example.com"], b"Subject: fwd\n\nfwd\n")
    q = os.path.join(os.path.dirname(MAIL), "queue", "info")
    ok(os.path.isdir(q) and len(os.listdir(q)) >= 1, "forward dave -> elsewhere: durably queued")


def load(total, sessions):
    clear()
    per = total // sessions
    errors = []
    lock = threading.Lock()

    def worker(w):
        try:
            s = smtplib.SMTP("127.0.0.1", PORT, timeout=60)
            for i in range(per):
                n = w * per + i
                s.sendmail("load@example.net", ["alice@example.com"],
                           b"Subject: load %d\r\nX-Seq: %d\r\n\r\nmessage %d\r\n" % (n, n, n))
            s.quit()
        except Exception as e:
            with lock:
                errors.append("%d: %r" % (w, e))

    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(w,)) for w in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.time() - t0
    ok(not errors, "%d sessions sent %d messages without an error (%.1fs)" % (sessions, total, dt),
       "\n".join(errors))
    seen = {}
    for f in files("alice"):
        data = open(f, "rb").read()
        for line in data.split(b"\n"):
            if line.startswith(b"X-Seq: "):
                n = int(line[7:])
                seen[n] = seen.get(n, 0) + 1
                break
    ok(len(files("alice")) == total, "exactly %d files delivered (got %d)" % (total, len(files("alice"))))
    ok(sorted(seen) == list(range(total)), "every message arrived (none lost)",
       "missing: %s" % sorted(set(range(total)) - set(seen))[:20])
    ok(all(v == 1 for v in seen.values()), "no message arrived twice",
       [k for k, v in seen.items() if v != 1][:20])


if MODE == "basic":
    basic()
elif MODE == "load":
    load(int(sys.argv[4]), int(sys.argv[5]))
