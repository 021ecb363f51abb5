/* ruleproc: the SMTP Rules engine's program (see ruleproc(8)). */
#ifndef RULEPROC_H
#define RULEPROC_H
#include <sys/stat.h>
#include "buf.h"
#include "rules.h"
#include "settings.h"

struct opts {
	const char *confdir;	/* resolved */
	const char *rulesfile;	/* -R, or NULL for CONFDIR/rules */
	const char *when;	/* -w "DAY HH:MM" */
	int verbose;
	int eager;		/* check the rules in full even when rules == rules.ok (milter) */
	/* dry run envelope */
	const char *sender;
	char **rcpts;
	int nrcpt;
	const char *ip, *name, *helo, *auth;
	int quiet;
};

/* The rules in force: CONFDIR/rules, or CONFDIR/rules.ok when rules
 * is broken (see rules(5), "VALIDATION"). */
struct loaded {
	struct ruleset rs;
	int fallback;		/* using rules.ok */
	int none;		/* no rules file at all */
	int lazy;		/* rules == rules.ok: regexes compiled on first use */
	char why[700];		/* why rules was not used (fallback) */
	struct stat st_rules, st_ok;	/* for reload checks */
};

/* 0 ok (rules in l), -1 no usable rules (reason in err). */
int rp_load(const struct opts *o, struct loaded *l, char *err, size_t errlen);
/* 1 if the files changed since l was loaded. */
int rp_changed(const struct opts *o, const struct loaded *l);
void rp_refresh(const struct opts *o, struct loaded *l);	/* reload if changed */
/* -t: check, and on success install CONFDIR/rules.ok. Exit code. */
int rp_check(const struct opts *o);
/* Copy text to CONFDIR/rules.ok atomically (tmp, fsync, rename, fsync
 * dir). 0 ok, -1 with errno. */
int rp_install_ok(const char *confdir, const char *text, size_t len);

int chain_mode(const struct opts *o, char **argv);
int dry_run(const struct opts *o);
int policy_mode(const struct opts *o);
int milter_mode(const struct opts *o, const char *sock);

/* Split a RECIPIENTS value (newline-separated; <> stripped). */
char **rp_split_rcpts(const char *s, int *n);
/* Strip one pair of <> and blanks; returns a new string. */
char *rp_bare(const char *s);
#endif
