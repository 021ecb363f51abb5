/* The decisions themselves. Fail closed: any table trouble is a
 * temporary failure, never acceptance and never relaying. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "ipaddr.h"
#include "log.h"
#include "relaycheck.h"
#include "tables.h"

static void
set(struct verdict *v, enum verdict_kind k, int code, const char *text)
{
	v->kind = k;
	v->code = code;
	strlcpy(v->text, text, sizeof v->text);
}

static void
defer_table(struct verdict *v, const char *table)
{
	set(v, V_DEFER, 451, "4.3.0 Temporary lookup failure, try again later");
	snprintf(v->why, sizeof v->why, "%s table unusable: %s", table, strerror(errno));
	log_warn("%s", v->why);
}

static int
open_one(struct rc *rc, struct table *t, const char *name, int required)
{
	char src[4200];

	if (table_open(t, rc->s.confdir, name) == 0)
		return 0;
	if (errno == ENOENT && !required) {
		/* an optional table with no text file either is simply empty */
		snprintf(src, sizeof src, "%s/%s", rc->s.confdir, name);
		if (access(src, F_OK) < 0)
			return 1;
		errno = ENOENT;
	}
	log_warnsys("cannot open %s", t->path);
	return -1;
}

static void
open_tables(struct rc *rc)
{
	int r;

	rc->tables_ok = open_one(rc, &rc->access, "access", 1) == 0;
	rc->tables_ok &= open_one(rc, &rc->domains, "domains", 1) == 0;
	rc->tables_ok &= open_one(rc, &rc->mailboxes, "mailboxes", 1) == 0;
	r = open_one(rc, &rc->backup, "backup", 0);
	rc->have_backup = r == 0;
	rc->tables_ok &= r >= 0;
}

int
rc_open(struct rc *rc, const char *confdir, char *err, size_t errlen)
{
	struct stat st;

	memset(rc, 0, sizeof *rc);
	rc->access.fd = rc->domains.fd = rc->backup.fd = rc->mailboxes.fd = -1;
	if (settings_load(&rc->s, confdir, err, errlen) < 0)
		return -1;
	if (stat(rc->s.confdir, &st) == 0)
		rc->dir_mtime = st.st_mtim;
	open_tables(rc);
	return 0;
}

void
rc_close(struct rc *rc)
{
	table_close(&rc->access);
	table_close(&rc->domains);
	table_close(&rc->backup);
	table_close(&rc->mailboxes);
	settings_free(&rc->s);
}

/* mkcdb renames new tables into the conf directory, which changes the
 * directory's mtime: one stat per request notices any rebuild. */
void
rc_refresh(struct rc *rc)
{
	struct stat st;

	if (stat(rc->s.confdir, &st) == 0 && rc->tables_ok &&
	    st.st_mtim.tv_sec == rc->dir_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == rc->dir_mtime.tv_nsec)
		return;
	rc->dir_mtime = st.st_mtim;
	table_close(&rc->access);
	table_close(&rc->domains);
	table_close(&rc->backup);
	table_close(&rc->mailboxes);
	open_tables(rc);
}

/* The client's access entry; -1 on table trouble (v set). */
static int
client_access(struct rc *rc, const struct client *c, struct access_result *ar, struct verdict *v)
{
	struct ipaddr ip;

	if (!rc->tables_ok) {
		errno = ENOENT;
		defer_table(v, "a required");
		return -1;
	}
	if (!c->ip || ip_parse(c->ip, &ip) < 0) {
		/* no usable address: the default applies, but never relay */
		memset(ar, 0, sizeof *ar);
		ar->action = strcmp(rc->s.access_default, "deny") ? ACCESS_ALLOW : ACCESS_DENY;
		strlcpy(ar->match, "no client address", sizeof ar->match);
		return 0;
	}
	if (access_lookup(&rc->access, &ip, rc->s.access_default, ar) < 0) {
		defer_table(v, "access");
		return -1;
	}
	return 0;
}

static void
explain_access(const struct access_result *ar, char *buf, size_t len)
{
	if (ar->line)
		snprintf(buf, len, "access line %d (%s) %s", ar->line, ar->match,
		    access_name(ar->action));
	else
		snprintf(buf, len, "access: %s, access_default %s", ar->match,
		    access_name(ar->action));
}

/* The explanations (v->why) are only shown with -v: the policy server
 * does not spend its time on the formatting otherwise. */
#define WHY(rc) ((rc)->verbose)

static void
client_verdict(struct rc *rc, const struct access_result *ar, struct verdict *v)
{
	if (WHY(rc))
		explain_access(ar, v->why, sizeof v->why);
	if (ar->action == ACCESS_DENY) {
		v->kind = V_REJECT;
		v->code = 554;
		snprintf(v->text, sizeof v->text, "5.7.1 %s", ar->text[0] ? ar->text : "Access denied");
	} else
		set(v, V_ACCEPT, 0, "");
}

void
check_client(struct rc *rc, const struct client *c, struct verdict *v)
{
	struct access_result ar;

	memset(v, 0, sizeof *v);
	if (client_access(rc, c, &ar, v) < 0)
		return;
	client_verdict(rc, &ar, v);
}

void
check_sender(struct rc *rc, const char *sender, struct verdict *v)
{
	struct addr a;
	const char *why;

	(void)rc;
	memset(v, 0, sizeof *v);
	why = addr_parse_path(sender, strlen(sender), &a, 1, 0, NULL);
	if (why) {
		set(v, V_REJECT, 553, "5.1.7 Bad sender address syntax");
		snprintf(v->why, sizeof v->why, "sender: %s", why);
		return;
	}
	set(v, V_ACCEPT, 0, "");
	snprintf(v->why, sizeof v->why, "sender syntax ok");
}

/* Does a local recipient have somewhere to go? 1 yes, 0 no, -1 error. */
static int
mailbox_exists(struct rc *rc, const struct addr *a, char *why, size_t whylen)
{
	char key[ADDR_PATH_MAX + 2];
	struct buf val = BUF_INIT;
	int line = 0, r;

	addr_key(a, key, sizeof key);
	r = mailbox_get(&rc->mailboxes, key, &val, &line);
	if (r == 0 && addr_strip_ext(key, rc->s.recipient_delimiter, NULL, 0))
		r = mailbox_get(&rc->mailboxes, key, &val, &line);
	if (r == 0) {
		key[0] = '@';	/* snprintf(key, sizeof key, "@%s", a->domain) */
		strlcpy(key + 1, a->domain, sizeof key - 1);
		r = mailbox_get(&rc->mailboxes, key, &val, &line);
	}
	if (!WHY(rc))
		;
	else if (r == 1)
		snprintf(why, whylen, "mailboxes line %d (%s)", line, key);
	else if (r == 0)
		snprintf(why, whylen, "no mailboxes entry");
	buf_free(&val);
	return r;
}

/* RFC 5321 4.5.1: <postmaster> without a domain must be accepted. It
 * stands for postmaster@HOSTNAME (settings), as deliver reads it, and
 * is then checked like any address: list the host name as a local
 * domain with a postmaster mailbox. Returns 1 if v is already decided. */
static int
bare_postmaster(struct rc *rc, struct addr *a, struct verdict *v)
{
	char buf[ADDR_PATH_MAX + 16];
	const char *why;

	snprintf(buf, sizeof buf, "postmaster@%s", rc->s.hostname);
	if ((why = addr_parse_path(buf, strlen(buf), a, 0, 0, NULL))) {
		set(v, V_DEFER, 451, "4.3.0 Bad hostname setting");
		snprintf(v->why, sizeof v->why, "postmaster@hostname: %s", why);
		return 1;
	}
	return 0;
}

/* The relay methods (VPOP3's): the client's address (access "relay", or
 * RELAYCLIENT from tcprules) and SMTP AUTH; relay_by says which count. */
static int
relay_allowed(const struct rc *rc, const struct client *c, const struct access_result *ar)
{
	int by_ip = ar->action == ACCESS_RELAY || c->relay_env;

	if (!strcmp(rc->s.relay_by, "ip"))
		return by_ip;
	if (!strcmp(rc->s.relay_by, "auth"))
		return c->authenticated;
	return by_ip || c->authenticated;
}

/* check_rcpt() once the client's access entry is known and not deny */
static void
rcpt_verdict(struct rc *rc, const struct client *c, const struct access_result *ar,
    const char *rcpt, struct verdict *v)
{
	struct addr a;
	const char *why;
	char matched[ADDR_DOMAIN_MAX + 2], mwhy[300], acc[300];
	int line = 0, r;

	if (WHY(rc))
		explain_access(ar, acc, sizeof acc);
	if ((why = addr_parse_path(rcpt, strlen(rcpt), &a, 0, 1, NULL))) {
		set(v, V_REJECT, 501, "5.1.3 Bad recipient address syntax");
		snprintf(v->why, sizeof v->why, "recipient: %s", why);
		return;
	}
	if (!a.domain[0] && bare_postmaster(rc, &a, v))
		return;
	r = domain_lookup(&rc->domains, a.domain, matched, sizeof matched, &line);
	if (r < 0) {
		defer_table(v, "domains");
		return;
	}
	if (r == 1) {
		r = mailbox_exists(rc, &a, mwhy, sizeof mwhy);
		if (r < 0) {
			defer_table(v, "mailboxes");
			return;
		}
		if (r == 0) {
			v->kind = V_REJECT;
			v->code = 550;
			snprintf(v->text, sizeof v->text,
			    "5.1.1 <%s>: Recipient address rejected: User unknown", a.full);
		} else
			set(v, V_ACCEPT, 0, "");
		if (WHY(rc))
			snprintf(v->why, sizeof v->why, "domains line %d (%s) local; %s", line, matched, mwhy);
		return;
	}
	if (rc->have_backup) {
		r = domain_lookup(&rc->backup, a.domain, matched, sizeof matched, &line);
		if (r < 0) {
			defer_table(v, "backup");
			return;
		}
		if (r == 1) {
			set(v, V_ACCEPT, 0, "");
			if (WHY(rc))
				snprintf(v->why, sizeof v->why, "backup line %d (%s): backup MX domain", line, matched);
			return;
		}
	}
	if (relay_allowed(rc, c, ar)) {
		set(v, V_RELAY, 0, "");
		if (WHY(rc))
			snprintf(v->why, sizeof v->why, "not local; relay allowed by %s (relay_by %s)",
			    ar->action == ACCESS_RELAY ? acc : c->relay_env ? "RELAYCLIENT" :
			    "authentication", rc->s.relay_by);
		return;
	}
	v->kind = V_REJECT;
	v->code = 554;
	snprintf(v->text, sizeof v->text, "5.7.1 <%s>: Relay access denied", a.full);
	if (WHY(rc))
		snprintf(v->why, sizeof v->why, "not a local or backup domain; %s", acc);
}

void
check_rcpt(struct rc *rc, const struct client *c, const char *rcpt, struct verdict *v)
{
	struct access_result ar;

	memset(v, 0, sizeof *v);
	if (client_access(rc, c, &ar, v) < 0)
		return;
	if (ar.action == ACCESS_DENY) {
		client_verdict(rc, &ar, v);
		return;
	}
	rcpt_verdict(rc, c, &ar, rcpt, v);
}
