/* mxqueue.h: private interfaces of mxqueue (see doc/mxqueue.8).
 *
 * main.c    modes, options, the admin commands (list, summary, flush,
 *           remove, requeue)
 * runner.c  the runner: scan, worker processes, limits, housekeeping
 * entry.c   one queue entry: group recipients, deliver, retry, expire,
 *           update the state durably
 * smtp.c    the SMTP client (one transaction to one destination)
 * route.c   routes table, MX / A / AAAA look-ups (res_nquery), ourselves
 * bounce.c  RFC 3464 delivery status notifications (bounces, warnings)
 * local.c   the maildir and local kinds (Maildir write, deliver(8)) */
#ifndef MXQUEUE_H
#define MXQUEUE_H
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "queue.h"
#include "settings.h"

#define MXQ_REPLY_MAX 400	/* bytes of a reply we keep */
#define MXQ_ADDRS_MAX 16	/* addresses tried per destination */
#define MXQ_RCPT_MAX 50		/* recipients per SMTP transaction */

struct mxq {
	struct settings s;
	char self[4096];	/* this executable (for deliver's directory) */
	int force;		/* try every pending recipient now */
};

/* ---- route.c ---- */
struct dest_addr {
	char host[256];		/* name for logs and Remote-MTA */
	struct sockaddr_storage sa;
	socklen_t salen;
};
struct dest {
	struct dest_addr a[MXQ_ADDRS_MAX];
	int n;
	int routed;		/* from the routes table */
};
enum { ROUTE_OK = 0, ROUTE_TEMP = 1, ROUTE_PERM = 2 };
/* Where mail for domain goes. ROUTE_OK with d filled, or ROUTE_TEMP /
 * ROUTE_PERM with "4.x.y text" / "5.x.y text" in err. */
int route_resolve(const struct mxq *q, const char *domain, struct dest *d,
    char *err, size_t errlen);

/* ---- smtp.c ---- */
struct smtp_rcpt {
	const char *addr;
	int code;		/* SMTP reply code for this recipient, 0 none */
	char reply[MXQ_REPLY_MAX];	/* "5.1.1 HOST said: 550 5.1.1 ..." */
};
struct smtp_msg {
	int fd;			/* mess/ID */
	long long size;
	const char *sender;
	const char *dt;		/* Delivered-To: to put in front, "" none */
	int eightbit;
};
/* Send msg to rcpt[0..n) trying d's addresses in order. Every
 * recipient ends with code 2xx, 4xx or 5xx and a reply. The connection
 * stays open afterwards for the next call with the same key (the
 * destination domain); smtp_close() ends it with QUIT. */
void smtp_send(const struct mxq *q, const char *key, const struct dest *d,
    const struct smtp_msg *m, struct smtp_rcpt *r, size_t n);
/* The key of the open connection, or NULL. */
const char *smtp_cached(void);
void smtp_close(const struct mxq *q);

/* ---- local.c ---- */
/* Deliver to a Maildir (kind maildir). 0 ok, or -1 with "4.x.y ..." */
int local_maildir(const struct mxq *q, int msgfd, const struct queue_info *qi,
    const struct queue_rcpt *r, char *reply, size_t rlen);
/* Run deliver(8) for one address (kind local). Returns 0 delivered,
 * 100 permanent, 111 temporary, with the reason in reply. */
int local_deliver(const struct mxq *q, int msgfd, const struct queue_info *qi,
    const char *addr, char *reply, size_t rlen);
/* 1 when the address's domain is one of ours (domains.cdb), 0 not,
 * -1 unknown (table trouble). */
int local_domain(const struct mxq *q, const char *addr);

/* ---- bounce.c ---- */
/* Queue a DSN about qi's recipients in state st (QS_FAILED: "failed";
 * QS_PENDING: "delayed") to rcpt (a double bounce when qi's sender is
 * empty). 0 queued, -1 (err). */
int bounce_queue(const struct mxq *q, int msgfd, const struct queue_info *qi,
    enum queue_state st, const char *to, int dbl, char *err, size_t errlen);

/* ---- entry.c ---- */
/* Work on one entry (locks it; a busy entry is left alone). Returns
 * the earliest next try of what is left (0: nothing left, -1: busy or
 * unreadable). */
long long entry_run(const struct mxq *q, const char *id);
/* entry_run(first), then, while the SMTP connection it used is open,
 * up to max more entries whose due recipients all go to that same
 * destination (each locked and updated on its own), over the same
 * connection; then QUIT. */
#define MXQ_BATCH 100
void entry_batch(const struct mxq *q, const char *first, int max);
/* The earliest next try of a pending recipient, 0 when none; and the
 * domain of the first pending SMTP recipient into dom (may be ""). */
long long entry_due(const struct queue_info *qi, char *dom, size_t domlen);
/* Retry interval after n attempts. */
long long entry_backoff(const struct settings *s, int attempts);
/* The domain part of an address (after the last '@'), lowercased. */
void addr_domain_of(const char *addr, char *dom, size_t len);

/* ---- runner.c ---- */
struct run_opts {
	int foreground;		/* -f */
	int once;		/* -1: one pass, wait, exit */
	const char *pidfile;	/* -p */
};
int runner(struct mxq *q, const struct run_opts *o);
/* Poke a running runner through QUEUEDIR/trigger (no error if none). */
void runner_poke(const char *qdir);
/* Housekeeping: tmp/ leftovers, orphan mess/ files. */
void runner_clean(const char *qdir);

/* ---- util (main.c) ---- */
void fmt_age(long long secs, char *buf, size_t len);
#endif
