/* relaycheck's decisions: client access, sender syntax, recipient
 * (local mailbox, backup domain, relay). */
#ifndef RELAYCHECK_H
#define RELAYCHECK_H
#include <sys/stat.h>
#include "settings.h"
#include "table.h"

struct rc {
	struct settings s;
	struct table access, domains, backup, mailboxes;
	int have_backup;	/* backup.cdb exists */
	int tables_ok;		/* all required tables open */
	struct timespec dir_mtime;	/* confdir, to notice rebuilds cheaply */
	int verbose;
};

enum verdict_kind { V_ACCEPT, V_RELAY, V_REJECT, V_DEFER };

struct verdict {
	enum verdict_kind kind;
	int code;		/* SMTP code for REJECT/DEFER */
	char text[600];		/* "5.1.1 ..." enhanced code and text */
	char why[600];		/* for -v: which table and line decided */
};

struct client {
	const char *ip;		/* may be NULL/"" */
	int relay_env;		/* RELAYCLIENT set (tcprules: an IP method) */
	int authenticated;	/* SMTP AUTH succeeded (sasl_username) */
};

int rc_open(struct rc *rc, const char *confdir, char *err, size_t errlen);
void rc_refresh(struct rc *rc);
void rc_close(struct rc *rc);
void check_client(struct rc *rc, const struct client *c, struct verdict *v);
void check_sender(struct rc *rc, const char *sender, struct verdict *v);
void check_rcpt(struct rc *rc, const struct client *c, const char *rcpt, struct verdict *v);
#endif
