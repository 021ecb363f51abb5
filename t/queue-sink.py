#!/usr/bin/env python3
"""A small SMTP sink for the queue tests (t/queue-*.sh).

usage: queue-sink.py HOST PORT OUTDIR [options]
  --no-ehlo         answer EHLO with 502 (the client must fall back to HELO)
  --no-pipelining   do not offer PIPELINING
  --size N          offer SIZE N
  --greet CODE      greeting code (e.g. 421, 554)
  --mail CODE       reply to MAIL FROM
  --dot CODE        reply after the dot
  --slow SECONDS    wait this long before answering the dot

Recipients decide their own reply by their local part: one starting
with "t4" gets 450 4.2.0, "p5" gets 550 5.1.1, anything else 250.
Every accepted message is written to OUTDIR/msg.N with the envelope in
front ("X-Sink-From: ...", one "X-Sink-To: ..." per accepted
recipient, "X-Sink-Params: ..." the MAIL FROM parameters), then the
text exactly as received after undoing the dot-stuffing (CRLF kept).
Every command line goes to OUTDIR/log. PID in OUTDIR/pid. The most
connections open at once so far is in OUTDIR/maxconc.
"""
import os
import socket
import socketserver
import sys
import threading
import time

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
opts = sys.argv[4:]


def opt(name, default=None):
    if name in opts:
        i = opts.index(name)
        if i + 1 < len(opts) and not opts[i + 1].startswith("--"):
            return opts[i + 1]
        return True
    return default


os.makedirs(out, exist_ok=True)
lock = threading.Lock()
count = [len([f for f in os.listdir(out) if f.startswith("msg.")])]
conc = [0, 0]  # open now, most so far


def conn_delta(d):
    with lock:
        conc[0] += d
        if conc[0] > conc[1]:
            conc[1] = conc[0]
            with open(os.path.join(out, "maxconc"), "w") as f:
                f.write("%d\n" % conc[1])


def log(line):
    with lock, open(os.path.join(out, "log"), "ab") as f:
        f.write(line + b"\n")


class H(socketserver.StreamRequestHandler):
    def send(self, s):
        self.wfile.write(s.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        conn_delta(1)
        try:
            self.session()
        finally:
            conn_delta(-1)

    def session(self):
        greet = opt("--greet")
        if greet:
            self.send("%s sink not now" % greet)
            return
        self.send("220 sink.test ESMTP")
        sender, rcpts, params = None, [], ""
        while True:
            line = self.rfile.readline()
            if not line:
                return
            log(line.rstrip(b"\r\n"))
            cmd = line.rstrip(b"\r\n").decode("latin-1")
            up = cmd.upper()
            if up.startswith("EHLO"):
                if opt("--no-ehlo"):
                    self.send("502 5.5.1 no EHLO here")
                    continue
                ext = ["250-sink.test", "250-8BITMIME"]
                if not opt("--no-pipelining"):
                    ext.append("250-PIPELINING")
                if opt("--size"):
                    ext.append("250-SIZE %s" % opt("--size"))
                ext.append("250 ENHANCEDSTATUSCODES")
                self.wfile.write(("\r\n".join(ext) + "\r\n").encode())
                self.wfile.flush()
            elif up.startswith("HELO"):
                self.send("250 sink.test")
            elif up.startswith("MAIL FROM:"):
                code = opt("--mail")
                if code:
                    self.send("%s %s.0.0 not from you" % (code, code[0]))
                    continue
                a = cmd[10:]
                sender = a[: a.index(">") + 1] if ">" in a else a
                params = a[len(sender):].strip()
                rcpts = []
                self.send("250 2.1.0 ok")
            elif up.startswith("RCPT TO:"):
                a = cmd[8:].strip()
                lp = a.strip("<>").split("@")[0].lower()
                if sender is None:
                    self.send("503 5.5.1 MAIL first")
                elif lp.startswith("t4"):
                    self.send("450 4.2.0 %s: mailbox busy, try later" % a)
                elif lp.startswith("p5"):
                    self.send("550 5.1.1 %s: no such user" % a)
                else:
                    rcpts.append(a)
                    self.send("250 2.1.5 ok")
            elif up == "DATA":
                if not rcpts:
                    self.send("554 5.5.1 no valid recipients")
                    continue
                self.send("354 go ahead")
                data = []
                while True:
                    l = self.rfile.readline()
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    data.append(l)
                if opt("--slow"):
                    time.sleep(float(opt("--slow")))
                code = opt("--dot")
                if code:
                    self.send("%s %s.0.0 not taken" % (code, code[0]))
                    continue
                with lock:
                    count[0] += 1
                    n = count[0]
                env = "X-Sink-From: %s\r\n" % sender
                env += "".join("X-Sink-To: %s\r\n" % r for r in rcpts)
                env += "X-Sink-Params: %s\r\n" % params
                tmp = os.path.join(out, ".tmp.%d" % n)
                with open(tmp, "wb") as f:
                    f.write(env.encode() + b"".join(data))
                os.rename(tmp, os.path.join(out, "msg.%d" % n))
                self.send("250 2.0.0 queued as %d" % n)
                sender, rcpts = None, []
            elif up == "RSET":
                sender, rcpts = None, []
                self.send("250 2.0.0 ok")
            elif up == "QUIT":
                self.send("221 2.0.0 bye")
                return
            elif up == "NOOP":
                self.send("250 2.0.0 ok")
            else:
                self.send("502 5.5.2 unknown command")


class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in host else socket.AF_INET


srv = S((host, port), H)
with open(os.path.join(out, "pid"), "w") as f:
    f.write("%d\n" % os.getpid())
srv.serve_forever()
