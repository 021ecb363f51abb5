/*
 * relaycheck: the policy half of the incoming feed.
 *   relaycheck [-v] [-c CONFDIR] IP [SENDER [RCPT...]]   from a shell
 *   relaycheck -p [-v] [-c CONFDIR]                     Postfix policy protocol
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "relaycheck.h"

#define REQ_MAX 65536		/* bytes in one policy request */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: relaycheck [-v] [-c CONFDIR] IP [SENDER [RCPT...]]\n"
	    "       relaycheck -p [-v] [-c CONFDIR]\n"
	    "  -p  serve Postfix's SMTP access policy protocol on stdin/stdout\n"
	    "  -v  explain each decision on stderr (table, line, entry)\n");
	exit(EXIT_PERM);
}

static int
relay_env(void)
{
	return getenv("RELAYCLIENT") != NULL;
}

/* ---- shell mode ---- */

static int
print_verdict(const char *what, const struct verdict *v, int verbose)
{
	if (verbose)
		fprintf(stderr, "relaycheck: %s: %s\n", what, v->why);
	switch (v->kind) {
	case V_ACCEPT:
	case V_RELAY:
		printf("accept\n");
		return 0;
	case V_REJECT:
		printf("reject %d %s\n", v->code, v->text);
		return EXIT_PERM;
	case V_DEFER:
		printf("defer %d %s\n", v->code, v->text);
		return EXIT_TEMP;
	}
	return EXIT_TEMP;
}

static int
worse(int a, int b)
{
	return a == EXIT_TEMP || b == EXIT_TEMP ? EXIT_TEMP : a ? a : b;
}

static int
shell_mode(struct rc *rc, int argc, char **argv)
{
	struct client c = { argv[0], relay_env() };
	struct verdict v;
	char what[400];
	int rc_exit, i;

	check_client(rc, &c, &v);
	snprintf(what, sizeof what, "client %s", argv[0]);
	rc_exit = print_verdict(what, &v, rc->verbose);
	if (argc > 1) {
		check_sender(rc, argv[1], &v);
		snprintf(what, sizeof what, "sender %s", argv[1]);
		rc_exit = worse(rc_exit, print_verdict(what, &v, rc->verbose));
	}
	for (i = 2; i < argc; i++) {
		check_rcpt(rc, &c, argv[i], &v);
		snprintf(what, sizeof what, "recipient %s", argv[i]);
		rc_exit = worse(rc_exit, print_verdict(what, &v, rc->verbose));
	}
	return rc_exit;
}

/* ---- policy mode ---- */

struct request {
	struct buf raw;		/* the attribute lines, NUL-separated */
	const char *state, *client, *sender, *rcpt, *sasl;
};

static const char *
attr(const char *line, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(line, name, n) && line[n] == '=' ? line + n + 1 : NULL;
}

/* Read one request; 1 got one, 0 clean EOF, -1 malformed. */
static int
read_request(struct request *r)
{
	char *line = NULL;
	size_t cap = 0, off;
	ssize_t n;
	int got = 0;

	buf_clear(&r->raw);
	int done = 0;

	while (!done && (n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = 0;
		if (n == 0) {
			done = 1;	/* the blank line ends the request */
			continue;
		}
		if ((size_t)n != strlen(line) || !strchr(line, '=') || r->raw.len + (size_t)n > REQ_MAX)
			break;
		buf_add(&r->raw, line, (size_t)n + 1);
		got = 1;
	}
	free(line);
	if (!done)
		return got || n > 0 ? -1 : 0;	/* EOF inside a request is malformed */
	if (!got)
		return -1;
	r->state = r->client = r->sender = r->rcpt = r->sasl = NULL;
	for (off = 0; off < r->raw.len; off += strlen(r->raw.s + off) + 1) {
		const char *l = r->raw.s + off, *v;
		if ((v = attr(l, "protocol_state")))
			r->state = v;
		else if ((v = attr(l, "client_address")))
			r->client = v;
		else if ((v = attr(l, "sender")))
			r->sender = v;
		else if ((v = attr(l, "recipient")))
			r->rcpt = v;
		else if ((v = attr(l, "sasl_username")))
			r->sasl = v;
	}
	return 1;
}

static void
answer(const struct verdict *v)
{
	switch (v->kind) {
	case V_ACCEPT:
		fputs("action=DUNNO\n\n", stdout);
		break;
	case V_RELAY:
		fputs("action=OK\n\n", stdout);
		break;
	case V_REJECT:
	case V_DEFER:
		printf("action=%d %s\n\n", v->code, v->text);
		break;
	}
}

/* The policy protocol carries the sender and recipient bare (no <>). */
static const char *
bracket(const char *s, char *buf, size_t len)
{
	snprintf(buf, len, "<%s>", s);
	return buf;
}

static void
decide(struct rc *rc, const struct request *r, struct verdict *v)
{
	struct client c = { r->client, relay_env() || (r->sasl && *r->sasl) };
	char tmp[1100];
	const char *st = r->state ? r->state : "";

	check_client(rc, &c, v);
	if (v->kind != V_ACCEPT)
		return;
	if (!strcmp(st, "MAIL") && r->sender)
		check_sender(rc, bracket(r->sender, tmp, sizeof tmp), v);
	else if (!strcmp(st, "RCPT") && r->rcpt)
		check_rcpt(rc, &c, bracket(r->rcpt, tmp, sizeof tmp), v);
}

static int
policy_mode(struct rc *rc)
{
	struct request r = { BUF_INIT, NULL, NULL, NULL, NULL, NULL };
	struct verdict v;
	int got;

	while ((got = read_request(&r)) > 0) {
		rc_refresh(rc);
		decide(rc, &r, &v);
		if (rc->verbose)
			log_info("%s %s %s%s: %s", r.state ? r.state : "?",
			    r.client ? r.client : "-", r.rcpt ? r.rcpt : "",
			    v.kind == V_REJECT || v.kind == V_DEFER ? " rejected" : "", v.why);
		answer(&v);
		/* flush only when no further request is already buffered */
		if (stdin->_IO_read_ptr >= stdin->_IO_read_end && fflush(stdout) == EOF)
			diesys(EXIT_TEMP, "write");
	}
	buf_free(&r.raw);
	if (fflush(stdout) == EOF)
		diesys(EXIT_TEMP, "write");
	if (got < 0) {
		/* Postfix's rule: on trouble, do not answer; log and disconnect */
		log_warn("malformed policy request; closing");
		return EXIT_PERM;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *confopt = NULL;
	char err[600];
	struct rc rc;
	int c, policy = 0, verbose = 0, r;

	log_init("relaycheck", NULL);
	while ((c = getopt(argc, argv, "c:pvh")) != -1) {
		switch (c) {
		case 'c': confopt = optarg; break;
		case 'p': policy = 1; break;
		case 'v': verbose = 1; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (!policy && argc < 1)
		usage();
	if (policy && argc > 0)
		usage();
	if (rc_open(&rc, settings_confdir(confopt), err, sizeof err) < 0) {
		log_warn("%s", err);
		if (policy)
			return EXIT_TEMP;
		printf("defer 451 4.3.0 Configuration error\n");
		fprintf(stderr, "4.3.0 configuration error\n");
		return EXIT_TEMP;
	}
	rc.verbose = verbose;
	r = policy ? policy_mode(&rc) : shell_mode(&rc, argc, argv);
	rc_close(&rc);
	return r;
}
