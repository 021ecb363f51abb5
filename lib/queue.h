/* queue: the durable queue for mail that does not go into a local
 * Maildir now (relayed, forwarded, backup MX, local retries, bounces
 * owed). On-disk format in queue(5); summary:
 *
 *   QUEUEDIR/tmp/ID.mess, tmp/ID.info  being written (never read)
 *   QUEUEDIR/mess/ID   the message, exactly as deliver received it
 *   QUEUEDIR/info/ID   envelope and per-recipient state (text)
 *   QUEUEDIR/trigger   optional FIFO; one byte is written after a put
 *
 * An entry exists once info/ID exists. Every file is written under
 * tmp/, fsynced, closed, renamed into place, and the directory fsynced;
 * mess/ID is in place before info/ID. State updates rewrite info/ID the
 * same way (queue_info_write). The queue runner reuses this code. */
#ifndef MX_QUEUE_H
#define MX_QUEUE_H
#include <stddef.h>
#include <sys/types.h>

#define QUEUE_VERSION 1

enum queue_state { QS_PENDING, QS_DELIVERED, QS_FAILED, QS_BOUNCED };
#define QUEUE_NSTATES 4
enum queue_kind {
	QK_RELAY,	/* to a non-local address as given (SMTP) */
	QK_FORWARD,	/* alias/forward to a non-local address (SMTP) */
	QK_MAILDIR,	/* local retry into a known Maildir (+ folder) */
	QK_LOCAL	/* local address to be resolved again (deliver) */
};

struct queue_rcpt {
	enum queue_state state;
	int attempts;
	long long next_try;	/* epoch seconds; 0 = now */
	long long last_try;	/* 0 = never */
	enum queue_kind kind;
	char *addr;		/* where to: the address to send or deliver to */
	char *orcpt;		/* the envelope recipient it came from */
	char *dt;		/* Delivered-To value to add, "" none */
	char *maildir;		/* QK_MAILDIR: path below the mail root */
	char *folder;		/* QK_MAILDIR: Maildir++ folder, "" none */
	char *reply;		/* last reply / reason, "" none */
};

struct queue_info {
	char id[128];
	long long created;
	char *sender;		/* "" = null sender <> */
	char *mxid;		/* smtpd-lite's message id, "" none */
	char *client;		/* TCPREMOTEIP, "" none */
	char *helo;
	long long size;		/* bytes of mess/ID */
	long long warned;	/* when a delay warning was sent, 0 never */
	struct queue_rcpt *rcpt;
	size_t nrcpt;
};

/* Queue the message read from fd (from offset off to EOF) with the
 * envelope in qi (qi->id, created and size are filled in). Creates the
 * queue's subdirectories when missing. Returns 0 when durable, -1 with
 * a reason in err (nothing left behind but, at worst, tmp/ files). */
int queue_put(const char *qdir, int fd, off_t off, struct queue_info *qi,
    char *err, size_t errlen);

/* Atomically replace info/ID (runner state updates). 0 or -1. */
int queue_info_write(const char *qdir, const struct queue_info *qi, char *err, size_t errlen);
/* Read and parse info/ID. 0, or -1 with err (errno ENOENT: gone). */
int queue_info_read(const char *qdir, const char *id, struct queue_info *qi,
    char *err, size_t errlen);
/* Add a recipient to qi (strings copied; NULL means ""). */
struct queue_rcpt *queue_add_rcpt(struct queue_info *qi, enum queue_state st,
    enum queue_kind kind, const char *addr, const char *orcpt, const char *dt,
    const char *maildir, const char *folder, const char *reply);
void queue_info_free(struct queue_info *qi);

/* The runner's lock on an entry: an exclusive flock(2) on mess/ID (that
 * file is never replaced, unlike info/ID). wait: block until free.
 * Returns the locked fd (open read-only, the message itself), or -1
 * (errno EWOULDBLOCK: another process holds it; ENOENT: no entry). */
int queue_lock(const char *qdir, const char *id, int wait);
/* Remove an entry: info/ID first (fsync info/), then mess/ID.
 * 0, or -1 with err. */
int queue_remove(const char *qdir, const char *id, char *err, size_t errlen);
/* A syntactically possible ID (no '/', no leading dot, short). */
int queue_id_ok(const char *id);

const char *queue_state_name(enum queue_state s);
const char *queue_kind_name(enum queue_kind k);
#endif
