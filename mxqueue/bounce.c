/* bounce.c: delivery status notifications (RFC 3464, RFC 3462
 * multipart/report) about an entry's recipients: "failed" (a bounce) or
 * "delayed" (a delay warning). The notification carries the original
 * header section (text/rfc822-headers), never the body. It is queued
 * as a new entry with the null sender, to a local recipient (kind
 * local, deliver(8) puts it into the Maildir) or a remote one (relay). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "buf.h"
#include "log.h"
#include "maildir.h"
#include "mxqueue.h"

#define HDR_MAX (64 * 1024)	/* bytes of the original header we return */

static void
rfc5322_date(long long t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	localtime_r(&tt, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* "5.1.1 host[ip] said: 550 5.1.1 text" (possibly after other words,
 * "5.4.7 expired ...; last: 4.2.0 host[ip] said: ...") -> status,
 * remote host, diagnostic. */
static void
split_reply(const char *reply, char *status, size_t slen, char *host, size_t hlen,
    const char **diag)
{
	const char *sp = strchr(reply, ' '), *said, *h;
	size_t n = sp ? (size_t)(sp - reply) : strlen(reply);

	if (n >= slen)
		n = slen - 1;
	memcpy(status, reply, n);
	status[n] = 0;
	host[0] = 0;
	*diag = NULL;
	if (sp && (said = strstr(sp, " said: "))) {
		size_t hn;
		const char *br;
		for (h = said; h > sp && h[-1] != ' '; h--)
			;
		hn = (size_t)(said - h);
		if ((br = memchr(h, '[', hn)))
			hn = (size_t)(br - h);
		if (hn < hlen) {
			memcpy(host, h, hn);
			host[hn] = 0;
		}
		*diag = said + 7;
	}
	if (!status[0] || status[1] != '.')
		strlcpy(status, "5.0.0", slen);
}

static void
add_headers(struct buf *b, int msgfd)
{
	char blk[8192];
	off_t off = 0;
	int nl = 1;

	while (off < HDR_MAX) {
		ssize_t n = pread(msgfd, blk, sizeof blk, off), i;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (i = 0; i < n && off + i < HDR_MAX; i++) {
			if (blk[i] == '\n' && nl)
				return;		/* the blank line: end of header */
			buf_addc(b, blk[i]);
			nl = blk[i] == '\n';
		}
		off += n;
	}
	if (!nl)
		buf_addc(b, '\n');
}

int
bounce_queue(const struct mxq *q, int msgfd, const struct queue_info *qi,
    enum queue_state st, const char *to, int dbl, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	struct queue_info nq;
	char date[80], boundary[600], tmpl[4300];
	long long now = (long long)time(NULL);
	const char *host = q->s.hostname;
	int delayed = st == QS_PENDING, fd, rc, loc;
	size_t i;

	rfc5322_date(now, date, sizeof date);
	snprintf(boundary, sizeof boundary, "%s/%lld/%s", qi->id, now, host);
	buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\n", host);
	buf_printf(&b, "To: <%s>\n", to);
	buf_printf(&b, "Subject: %s\n", dbl ? "Undeliverable bounce (double bounce)" :
	    delayed ? "Delayed Mail (still being retried)" :
	    "Undelivered Mail Returned to Sender");
	buf_printf(&b, "Date: %s\n", date);
	buf_printf(&b, "Message-ID: <%s.%s@%s>\n", qi->id, delayed ? "delay" : "bounce", host);
	buf_adds(&b, "Auto-Submitted: auto-replied\n");
	buf_adds(&b, "MIME-Version: 1.0\n");
	buf_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n\n", boundary);
	buf_adds(&b, "This is a MIME-encapsulated message.\n\n");

	/* 1: for people */
	buf_printf(&b, "--%s\nContent-Description: Notification\n"
	    "Content-Type: text/plain; charset=us-ascii\n\n", boundary);
	buf_printf(&b, "This is the mail system at host %s.\n\n", host);
	if (delayed) {
		char age[40];
		fmt_age(now - qi->created, age, sizeof age);
		buf_printf(&b, "Your message could not be delivered for %s to the\n"
		    "recipients below. It is still being retried; you need not send\n"
		    "it again. This is only a warning.\n\n", age);
	} else if (dbl)
		buf_printf(&b, "A bounce (a message from <>) could not be delivered.\n"
		    "It is returned to the postmaster; it was sent by <%s>.\n\n", qi->sender);
	else
		buf_adds(&b, "I'm sorry to have to inform you that your message could not\n"
		    "be delivered to one or more recipients. The reasons follow.\n\n");
	for (i = 0; i < qi->nrcpt; i++)
		if (qi->rcpt[i].state == st)
			buf_printf(&b, "<%s>: %s\n", qi->rcpt[i].orcpt[0] ? qi->rcpt[i].orcpt :
			    qi->rcpt[i].addr, qi->rcpt[i].reply[0] ? qi->rcpt[i].reply :
			    "4.0.0 not yet delivered");
	buf_adds(&b, "\n");

	/* 2: for programs */
	buf_printf(&b, "--%s\nContent-Description: Delivery report\n"
	    "Content-Type: message/delivery-status\n\n", boundary);
	buf_printf(&b, "Reporting-MTA: dns; %s\n", host);
	buf_printf(&b, "X-Mx-Queue-ID: %s\n", qi->id);
	rfc5322_date(qi->created, date, sizeof date);
	buf_printf(&b, "Arrival-Date: %s\n", date);
	for (i = 0; i < qi->nrcpt; i++) {
		const struct queue_rcpt *r = &qi->rcpt[i];
		char status[32], rhost[256];
		const char *diag;
		if (r->state != st)
			continue;
		split_reply(r->reply[0] ? r->reply : "4.0.0", status, sizeof status, rhost,
		    sizeof rhost, &diag);
		buf_adds(&b, "\n");
		buf_printf(&b, "Final-Recipient: rfc822; %s\n", r->addr);
		if (r->orcpt[0] && strcmp(r->orcpt, r->addr))
			buf_printf(&b, "Original-Recipient: rfc822; %s\n", r->orcpt);
		buf_printf(&b, "Action: %s\n", delayed ? "delayed" : "failed");
		if (delayed && status[0] != '4')
			status[0] = '4';
		buf_printf(&b, "Status: %s\n", status);
		if (rhost[0])
			buf_printf(&b, "Remote-MTA: dns; %s\n", rhost);
		if (diag)
			buf_printf(&b, "Diagnostic-Code: smtp; %s\n", diag);
		else if (r->reply[0])
			buf_printf(&b, "Diagnostic-Code: X-mx; %s\n", r->reply);
		if (r->last_try) {
			rfc5322_date(r->last_try, date, sizeof date);
			buf_printf(&b, "Last-Attempt-Date: %s\n", date);
		}
		if (delayed) {
			rfc5322_date(qi->created + q->s.queue_lifetime, date, sizeof date);
			buf_printf(&b, "Will-Retry-Until: %s\n", date);
		}
	}
	buf_adds(&b, "\n");

	/* 3: the original header */
	buf_printf(&b, "--%s\nContent-Description: Undelivered Message Headers\n"
	    "Content-Type: text/rfc822-headers\n\n", boundary);
	add_headers(&b, msgfd);
	buf_printf(&b, "\n--%s--\n", boundary);

	/* into the queue as a new entry */
	snprintf(tmpl, sizeof tmpl, "%s/tmp", q->s.queuedir);
	fd = open(tmpl, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(tmpl, sizeof tmpl, "%s/tmp/bounce.%s.XXXXXX", q->s.queuedir, qi->id);
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd >= 0)
			unlink(tmpl);
	}
	if (fd < 0 || fd_write_all(fd, b.s, b.len) < 0) {
		snprintf(err, errlen, "cannot write the notification: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		buf_free(&b);
		return -1;
	}
	buf_free(&b);
	memset(&nq, 0, sizeof nq);
	nq.sender = xstrdup("");
	nq.mxid = xstrdup(dbl ? "double-bounce" : qi->mxid);
	nq.client = xstrdup("");
	nq.helo = xstrdup("");
	loc = local_domain(q, to);
	queue_add_rcpt(&nq, QS_PENDING, loc == 0 ? QK_RELAY : QK_LOCAL, to, to, "", "", "", "");
	rc = queue_put(q->s.queuedir, fd, 0, &nq, err, errlen);
	if (rc == 0)
		log_info("%s %s to <%s>", dbl ? "double bounce" :
		    delayed ? "delay warning" : "bounce", nq.id, to);
	queue_info_free(&nq);
	close(fd);
	return rc;
}
