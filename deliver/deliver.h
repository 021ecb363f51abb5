/* deliver.h: private interfaces of deliver (see doc/deliver.8).
 *
 * main.c     options, envelope, the order of work, exit codes
 * resolve.c  recipient -> targets through domains.cdb and mailboxes.cdb
 * message.c  the message on stdin: seekable copy, header scan, writing
 *            it with our header lines in front
 * local.c    Maildir delivery: one write, N links, fsync */
#ifndef DELIVER_H
#define DELIVER_H
#include <stddef.h>
#include <sys/types.h>

#include "addr.h"
#include "buf.h"
#include "maildir.h"
#include "settings.h"
#include "table.h"

#define ALIAS_DEPTH_MAX 10
#define TARGETS_MAX 1000	/* per envelope recipient, after expansion */

enum tkind { T_MAILDIR, T_REMOTE };
enum tstate { TS_TODO, TS_DONE, TS_TEMP };

struct target {
	enum tkind kind;
	char *path;		/* T_MAILDIR: below the mail root, from the table */
	char *folder;		/* T_MAILDIR: normalised Maildir++ folder, "" none */
	int folder_optional;	/* deliver to the folder only if it exists */
	char *addr;		/* T_REMOTE: the address to send to */
	int forward;		/* T_REMOTE: reached through the table (alias) */
	enum tstate state;
	char reason[300];	/* TS_TEMP: "4.x.y text" */
	char newname[MAILDIR_NAME_MAX];	/* TS_DONE: file in new/ */
};

enum rstate { RS_OK, RS_PERM, RS_TEMP };

struct rcpt {
	char *given;		/* as received */
	char key[ADDR_PATH_MAX + 1];	/* lowercase local@domain */
	char tag[ADDR_LOCAL_MAX + 1];	/* user+TAG, "" none */
	int local;		/* in a local domain */
	enum rstate state;
	char reason[300];	/* RS_PERM/RS_TEMP: "5.1.1 text" */
	struct target *t;
	size_t nt;
	int group;		/* which data file its Maildir targets share */
	int dt_used;		/* its file carried "Delivered-To: key" */
};

struct tables {
	struct table domains, mailboxes;
	int have_domains, have_mailboxes;
};

/* resolve.c */
void resolve(const struct settings *s, struct tables *tb, struct rcpt *r);
void target_free(struct target *t);

/* message.c */
struct msg {
	int fd;			/* seekable, the message from start */
	off_t start, end;
	int hops;		/* Received: + Delivered-To: fields */
	char **dt;		/* Delivered-To values, lowercased, <> stripped */
	size_t ndt;
	off_t (*skip)[2];	/* header ranges left out (old Return-Path:) */
	size_t nskip;
	const char *ins;	/* fields ruleproc added (MXHEADERS), or NULL */
	size_t inslen;
	off_t ins_at;		/* where they go: the blank line after the header */
};
/* Make fd 0 usable: seekable as is, or copied once into a temporary
 * file in dirfd (unlinked at once). 0, or -1 with a reason. */
int msg_open(struct msg *m, int spooldirfd, char *err, size_t errlen);
/* Scan the header section. 0 or -1 (read error). */
int msg_scan(struct msg *m, char *err, size_t errlen);
int msg_has_dt(const struct msg *m, const char *key);
/* MXHEADERS and MXHEADERS_AT from the environment (ruleproc's added
 * fields, deliver(8)) into m; 0, or -1 with a reason if they are not
 * header fields or not a place in the message. */
int msg_insert(struct msg *m, char *err, size_t errlen);
/* Write hdr then the message (without old Return-Path: fields, with
 * the inserted fields) to out.
 * 0, or -1 with errno (a write error) and *rd set when reading failed. */
int msg_write(const struct msg *m, int out, const char *hdr, size_t hlen, int *rd);
/* The message as it is to be delivered (inserted fields included) in
 * a new unlinked file or memfd at offset 0, for the queue; -1 on error. */
int msg_materialize(const struct msg *m, const char *spooldir);

/* local.c */
struct local_ctx {
	const struct settings *s;
	int rootfd;		/* the mail root, -1 when it cannot be opened */
	char rooterr[300];
	const char *sender;	/* for Return-Path: */
	const struct msg *m;
	struct mdc **cache;	/* Maildirs opened so far (local.c) */
	size_t ncache;
};
struct mdc;
/* Deliver every TS_TODO Maildir target of the recipients in group g.
 * Targets end TS_DONE or TS_TEMP with a reason. */
void local_deliver_group(struct local_ctx *c, struct rcpt *r, size_t nr, int g);
/* Housekeeping after delivery: clean tmp/ of the Maildirs used. */
void local_cleanup(struct local_ctx *c);
#endif
