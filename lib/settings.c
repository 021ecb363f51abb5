#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "settings.h"

#ifndef MX_CONFDIR
#define MX_CONFDIR "/etc/mx"
#endif

enum kind { K_NUM, K_TIME, K_SIZE, K_STR, K_PATH, K_BOOL, K_ACCESS, K_RELAYBY, K_LIST, K_CMD, K_QUEUETLS, K_MILTER, K_MILTERDA };

struct key {
	const char *name;
	enum kind kind;
	size_t off;
	size_t len;		/* string buffer size */
	long long min, max;	/* numbers */
	const char *def;
};

#define OFF(f) offsetof(struct settings, f)
#define STRK(n, k, f, d) { n, k, OFF(f), sizeof(((struct settings *)0)->f), 0, 0, d }
#define NUMK(n, k, f, lo, hi, d) { n, k, OFF(f), 0, lo, hi, d }

static const struct key keys[] = {
	STRK("hostname", K_STR, hostname, ""),
	NUMK("max_size", K_SIZE, max_size, 1024, 2147483647LL, "10485760"),
	NUMK("max_recipients", K_NUM, max_recipients, 1, 100000, "100"),
	NUMK("max_errors", K_NUM, max_errors, 1, 1000, "10"),
	NUMK("max_hops", K_NUM, max_hops, 1, 1000, "100"),
	NUMK("timeout_command", K_NUM, timeout_command, 1, 86400, "300"),
	NUMK("timeout_data", K_NUM, timeout_data, 1, 86400, "600"),
	NUMK("timeout_chain", K_NUM, timeout_chain, 1, 86400, "600"),
	NUMK("timeout_policy", K_NUM, timeout_policy, 1, 3600, "100"),
	NUMK("max_connections", K_NUM, max_connections, 1, 100000, "100"),
	NUMK("max_per_ip", K_NUM, max_per_ip, 1, 100000, "10"),
	STRK("mailroot", K_PATH, mailroot, "mail"),
	STRK("queuedir", K_PATH, queuedir, "queue"),
	STRK("spooldir", K_PATH, spooldir, "spool"),
	NUMK("spool_memory", K_SIZE, spool_memory, 0, 1073741824LL, "262144"),
	STRK("user", K_STR, user, "nobody"),
	STRK("access_default", K_ACCESS, access_default, "allow"),
	STRK("relay_by", K_RELAYBY, relay_by, "ip-or-auth"),
	STRK("recipient_delimiter", K_STR, recipient_delimiter, "+"),
	NUMK("create_maildirs", K_BOOL, create_maildirs, 0, 1, "yes"),
	STRK("bindir", K_PATH, bindir, ""),
	{ "policy", K_LIST, 0, 0, 0, 0, NULL },
	{ "chain", K_CMD, 0, 0, 0, 0, NULL },
	NUMK("fork_servers", K_BOOL, fork_servers, 0, 1, "yes"),
	/* remote delivery (mxqueue); times take s, m, h or d */
	NUMK("queue_workers", K_NUM, queue_workers, 1, 1000, "20"),
	NUMK("queue_per_destination", K_NUM, queue_per_destination, 1, 1000, "10"),
	NUMK("queue_scan", K_TIME, queue_scan, 1, 86400, "60"),
	NUMK("retry_min", K_TIME, retry_min, 1, 86400, "5m"),
	NUMK("retry_max", K_TIME, retry_max, 1, 7 * 86400, "4h"),
	NUMK("queue_lifetime", K_TIME, queue_lifetime, 1, 60 * 86400, "5d"),
	NUMK("delay_warning", K_TIME, delay_warning, 0, 60 * 86400, "0"),
	STRK("doublebounce_to", K_STR, doublebounce_to, "postmaster"),
	STRK("nameserver", K_STR, nameserver, ""),
	NUMK("smtp_port", K_NUM, smtp_port, 1, 65535, "25"),
	NUMK("smtp_timeout_connect", K_TIME, smtp_timeout_connect, 1, 3600, "60"),
	NUMK("smtp_timeout_greeting", K_TIME, smtp_timeout_greeting, 1, 3600, "300"),
	NUMK("smtp_timeout_mail", K_TIME, smtp_timeout_mail, 1, 3600, "300"),
	NUMK("smtp_timeout_rcpt", K_TIME, smtp_timeout_rcpt, 1, 3600, "300"),
	NUMK("smtp_timeout_data", K_TIME, smtp_timeout_data, 1, 3600, "120"),
	NUMK("smtp_timeout_block", K_TIME, smtp_timeout_block, 1, 3600, "180"),
	NUMK("smtp_timeout_dot", K_TIME, smtp_timeout_dot, 1, 3600, "600"),
	STRK("queue_tls", K_QUEUETLS, queue_tls, "opportunistic"),
	STRK("queue_tls_ca_file", K_PATH, queue_tls_ca_file, ""),
	/* smtpd-lite: TLS and SMTP AUTH */
	STRK("tls_cert", K_PATH, tls_cert, ""),
	STRK("tls_key", K_PATH, tls_key, ""),
	NUMK("auth_loopback_plaintext", K_BOOL, auth_loopback_plaintext, 0, 1, "no"),
	NUMK("auth_failure_delay", K_TIME, auth_failure_delay, 0, 60, "2"),
	NUMK("auth_max_failures", K_NUM, auth_max_failures, 1, 1000, "3"),
	NUMK("auth_sender_check", K_BOOL, auth_sender_check, 0, 1, "no"),
	STRK("auth_checkpassword", K_STR, auth_checkpassword, ""),
	/* smtpd-lite: milters */
	{ "milter", K_MILTER, 0, 0, 0, 0, NULL },
	STRK("milter_default_action", K_MILTERDA, milter_default_action, "tempfail"),
	NUMK("milter_connect_timeout", K_TIME, milter_connect_timeout, 1, 3600, "30"),
	NUMK("milter_command_timeout", K_TIME, milter_command_timeout, 1, 3600, "30"),
	NUMK("milter_content_timeout", K_TIME, milter_content_timeout, 1, 3600, "300"),
};

const char *
settings_confdir(const char *opt)
{
	const char *e;

	if (opt && *opt)
		return opt;
	e = getenv("MXCONF");
	if (e && *e)
		return e;
	return MX_CONFDIR;
}

static int
set_path(char *dst, size_t len, const char *confdir, const char *v)
{
	if (*v == '/' || *v == 0)
		return strlcpy(dst, v, len) >= len ? -1 : 0;
	if (strlcpy(dst, confdir, len) >= len || strlcat(dst, "/", len) >= len ||
	    strlcat(dst, v, len) >= len)
		return -1;
	return 0;
}

static const char *
set_one(struct settings *s, const struct key *k, const char *v)
{
	char *base = (char *)s;
	const char *errstr = NULL;
	long long n;

	switch (k->kind) {
	case K_NUM:
	case K_TIME:
	case K_SIZE: {
		char *end;
		errno = 0;
		n = strtoll(v, &end, 10);
		if (end == v || errno)
			return "not a number";
		if (k->kind == K_TIME && *end) {
			long long mul;
			if (!strcmp(end, "s"))
				mul = 1;
			else if (!strcmp(end, "m"))
				mul = 60;
			else if (!strcmp(end, "h"))
				mul = 3600;
			else if (!strcmp(end, "d"))
				mul = 86400;
			else
				return "bad time suffix (use s, m, h or d)";
			if (n > k->max / mul + 1)
				return "too large";
			n *= mul;
		} else if (k->kind == K_SIZE && *end) {
			if (!strcasecmp(end, "k"))
				n *= 1024;
			else if (!strcasecmp(end, "m"))
				n *= 1024 * 1024;
			else
				return "bad size suffix (use k or M)";
		} else if (*end)
			return "not a number";
		if (n < k->min)
			errstr = "too small";
		if (n > k->max)
			errstr = "too large";
		if (errstr)
			return errstr;
		*(long long *)(base + k->off) = n;
		return NULL;
	}
	case K_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "1"))
			*(int *)(base + k->off) = 1;
		else if (!strcmp(v, "no") || !strcmp(v, "0"))
			*(int *)(base + k->off) = 0;
		else
			return "expected yes or no";
		return NULL;
	case K_ACCESS:
		if (strcmp(v, "allow") && strcmp(v, "deny") && strcmp(v, "relay"))
			return "expected allow, deny or relay";
		/* FALLTHROUGH */
	case K_RELAYBY:
		if (k->kind == K_RELAYBY && strcmp(v, "ip-or-auth") && strcmp(v, "ip") && strcmp(v, "auth"))
			return "expected ip-or-auth, ip or auth";
		/* FALLTHROUGH */
	case K_MILTERDA:
		if (k->kind == K_MILTERDA && strcmp(v, "tempfail") && strcmp(v, "accept") &&
		    strcmp(v, "reject"))
			return "expected tempfail, accept or reject";
		/* FALLTHROUGH */
	case K_QUEUETLS:
		if (k->kind == K_QUEUETLS && strcmp(v, "no") && strcmp(v, "opportunistic"))
			return "expected no or opportunistic";
		/* FALLTHROUGH */
	case K_STR:
		if (strlcpy(base + k->off, v, k->len) >= k->len)
			return "value too long";
		return NULL;
	case K_PATH:
		if (set_path(base + k->off, k->len, s->confdir, v) < 0)
			return "path too long";
		return NULL;
	case K_LIST:
		if (s->npolicy >= SETTINGS_MAX_POLICY)
			return "too many policy services";
		if (strncmp(v, "unix:", 5) && strncmp(v, "inet:", 5) && strncmp(v, "exec:", 5))
			return "policy service must be unix:PATH, inet:HOST:PORT or exec:COMMAND";
		s->policy[s->npolicy++] = xstrdup(v);
		return NULL;
	case K_MILTER:
		if (s->nmilter >= SETTINGS_MAX_MILTER)
			return "too many milters";
		if (strncmp(v, "unix:/", 6) && strncmp(v, "inet:", 5))
			return "milter must be unix:/PATH or inet:HOST:PORT [option=value...]";
		s->milter[s->nmilter++] = xstrdup(v);
		return NULL;
	case K_CMD:
		free(s->chain);
		s->chain = xstrdup(v);
		return NULL;
	}
	return "internal error";
}

static const struct key *
find_key(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static void
defaults(struct settings *s)
{
	size_t i;

	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (keys[i].def)
			(void)set_one(s, &keys[i], keys[i].def);
	if (gethostname(s->hostname, sizeof s->hostname) != 0 || !s->hostname[0])
		strlcpy(s->hostname, "localhost", sizeof s->hostname);
	s->hostname[sizeof s->hostname - 1] = 0;
}

int
settings_load(struct settings *s, const char *confdir, char *err, size_t errlen)
{
	char path[4200], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int lineno = 0;

	memset(s, 0, sizeof *s);
	if (!realpath(confdir, s->confdir)) {
		snprintf(err, errlen, "%s: %s", confdir, strerror(errno));
		return -1;
	}
	defaults(s);
	snprintf(path, sizeof path, "%s/settings", s->confdir);
	if (!(f = fopen(path, "r"))) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *p = line, *name, *v, *e;
		const struct key *k = NULL;
		const char *why;

		lineno++;
		if ((size_t)n != strlen(line)) {
			why = "NUL byte in line";
			goto bad;
		}
		/* '#' starts a comment at the start of a line or after a blank */
		for (e = p; (e = strchr(e, '#')); e++)
			if (e == p || isspace((unsigned char)e[-1])) {
				*e = 0;
				break;
			}
		while (isspace((unsigned char)*p))
			p++;
		e = p + strlen(p);
		while (e > p && isspace((unsigned char)e[-1]))
			*--e = 0;
		if (!*p)
			continue;
		name = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p)
			*p++ = 0;
		while (isspace((unsigned char)*p))
			p++;
		v = p;
		if (!(k = find_key(name))) {
			why = "unknown setting";
			goto bad;
		}
		if (!*v && k->kind != K_STR && k->kind != K_PATH) {
			why = "missing value";
			goto bad;
		}
		if ((why = set_one(s, k, v)))
			goto bad;
		continue;
bad:
		snprintf(err, errlen, "%s:%d: %s%s%s", path, lineno, why,
		    k ? " for " : "", k ? k->name : "");
		free(line);
		fclose(f);
		settings_free(s);
		return -1;
	}
	free(line);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		fclose(f);
		settings_free(s);
		return -1;
	}
	fclose(f);
	return 0;
}

void
settings_print(const struct settings *s)
{
	size_t i;
	const char *base = (const char *)s;
	int j;

	for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const struct key *k = &keys[i];
		switch (k->kind) {
		case K_NUM:
		case K_TIME:
		case K_SIZE:
			printf("%s %lld\n", k->name, *(const long long *)(base + k->off));
			break;
		case K_BOOL:
			printf("%s %s\n", k->name, *(const int *)(base + k->off) ? "yes" : "no");
			break;
		case K_STR:
		case K_PATH:
		case K_ACCESS:
		case K_QUEUETLS:
		case K_MILTERDA:
		case K_RELAYBY:
			printf("%s %s\n", k->name, base + k->off);
			break;
		case K_LIST:
			for (j = 0; j < s->npolicy; j++)
				printf("policy %s\n", s->policy[j]);
			break;
		case K_MILTER:
			for (j = 0; j < s->nmilter; j++)
				printf("milter %s\n", s->milter[j]);
			break;
		case K_CMD:
			if (s->chain)
				printf("chain %s\n", s->chain);
			break;
		}
	}
}

void
settings_free(struct settings *s)
{
	int i;

	for (i = 0; i < s->npolicy; i++)
		free(s->policy[i]);
	s->npolicy = 0;
	for (i = 0; i < s->nmilter; i++)
		free(s->milter[i]);
	s->nmilter = 0;
	free(s->chain);
	s->chain = NULL;
}
