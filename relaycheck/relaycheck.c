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
#include "forkserver.h"
#include "log.h"
#include "pstages.h"
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

/* The environment does not change while we run: look once. */
static int
relay_env(void)
{
	static int v = -1;

	if (v < 0)
		v = getenv("RELAYCLIENT") != NULL;
	return v;
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
	struct client c = { argv[0], relay_env(), 0 };
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

/* stdin, read in big blocks: getline() per attribute line (a dozen a
 * request) was a fifth of the time. Lines longer than REQ_MAX are
 * refused whole, as before, without being read to their end. */
static struct {
	char *buf;
	size_t pos, end;	/* unread data is buf[pos..end) */
	int eof;
} in;
#define IN_SIZE (REQ_MAX + 65536)

/* Before waiting for input, send the answers given so far: a client
 * that waits for them before sending more must get them. */
static void
in_fill(void)
{
	ssize_t n;

	if (fflush(stdout) == EOF)
		diesys(EXIT_TEMP, "write");
	if (in.pos > 0) {
		memmove(in.buf, in.buf + in.pos, in.end - in.pos);
		in.end -= in.pos;
		in.pos = 0;
	}
	do
		n = read(0, in.buf + in.end, IN_SIZE - in.end);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		in.eof = 1;
	else
		in.end += (size_t)n;
}

/* The next line, NUL-terminated in place without its '\n' (which the
 * last line may lack), length in *len; 1 ok, 0 end of input, -1 a line
 * longer than REQ_MAX. */
static int
in_line(char **line, size_t *len)
{
	size_t scanned = 0;
	char *nl;

	if (!in.buf)
		in.buf = xmalloc(IN_SIZE + 1);
	for (;;) {
		nl = memchr(in.buf + in.pos + scanned, '\n', in.end - in.pos - scanned);
		if (nl)
			break;
		scanned = in.end - in.pos;
		if (scanned > REQ_MAX)
			return -1;
		if (in.eof) {
			if (!scanned)
				return 0;
			nl = in.buf + in.end;	/* last line, no '\n' */
			break;
		}
		in_fill();
	}
	*line = in.buf + in.pos;
	*len = (size_t)(nl - *line);
	*nl = 0;
	in.pos = (size_t)(nl - in.buf) + (nl < in.buf + in.end);
	if (*len > REQ_MAX)
		return -1;
	return 1;
}

static void parse_request(struct request *r);

/* Read one request; 1 got one, 0 clean EOF, -1 malformed. */
static int
read_request(struct request *r)
{
	char *line;
	size_t n;
	int got = 0, done = 0, l;

	buf_clear(&r->raw);
	while (!done && (l = in_line(&line, &n)) > 0) {
		if (n == 0) {
			done = 1;	/* the blank line ends the request */
			continue;
		}
		if (memchr(line, 0, n) || !memchr(line, '=', n) || r->raw.len + n > REQ_MAX)
			break;
		buf_add(&r->raw, line, n + 1);
		got = 1;
	}
	if (!done)
		return got || l != 0 ? -1 : 0;	/* EOF inside a request is malformed */
	if (!got)
		return -1;
	parse_request(r);
	return 1;
}

/* The attributes we use, from r->raw's NUL-separated lines. */
static void
parse_request(struct request *r)
{
	size_t off;

	r->state = r->client = r->sender = r->rcpt = r->sasl = NULL;
	for (off = 0; off < r->raw.len; ) {
		const char *ln = r->raw.s + off, *eq = strchr(ln, '=');
		size_t nl = strlen(ln), k = (size_t)(eq - ln);

		/* name=value: the name ends at the first '=' */
		switch (k) {
		case 6:
			if (!memcmp(ln, "sender", 6))
				r->sender = eq + 1;
			break;
		case 9:
			if (!memcmp(ln, "recipient", 9))
				r->rcpt = eq + 1;
			break;
		case 13:
			if (!memcmp(ln, "sasl_username", 13))
				r->sasl = eq + 1;
			break;
		case 14:
			if (!memcmp(ln, "protocol_state", 14))
				r->state = eq + 1;
			else if (!memcmp(ln, "client_address", 14))
				r->client = eq + 1;
			break;
		}
		off += nl + 1;
	}
}

static void
answer_to(struct buf *out, const struct verdict *v)
{
	switch (v->kind) {
	case V_ACCEPT:
		buf_adds(out, "action=DUNNO\n\n");
		break;
	case V_RELAY:
		buf_adds(out, "action=OK\n\n");
		break;
	case V_REJECT:
	case V_DEFER:
		if (v->code >= 100 && v->code <= 999) {	/* "action=%d %s\n\n" */
			char code[4] = { (char)('0' + v->code / 100),
			    (char)('0' + v->code / 10 % 10), (char)('0' + v->code % 10), ' ' };
			buf_adds(out, "action=");
			buf_add(out, code, 4);
			buf_adds(out, v->text);
			buf_adds(out, "\n\n");
		} else
			buf_printf(out, "action=%d %s\n\n", v->code, v->text);
		break;
	}
}

/* The answer, and when smtpd-lite asks which stages need us
 * (pstages.h): RCPT only. CONNECT has been answered, and at HELO and
 * MAIL we would repeat its decision (the client's access entry) and the
 * sender syntax check smtpd-lite has already made. */
static void
answer_req(struct buf *out, const struct verdict *v, const struct request *r)
{
	answer_to(out, v);
	if (pstages_asked(r->raw.s, r->raw.len)) {
		out->len--;	/* the empty line comes last */
		pstages_reply(out, PST_RCPT);
		buf_addc(out, '\n');
	}
}

static void
answer(const struct verdict *v, const struct request *r)
{
	static struct buf out = BUF_INIT;

	buf_clear(&out);
	answer_req(&out, v, r);
	fwrite(out.s, 1, out.len, stdout);
}

/* The policy protocol carries the sender and recipient bare (no <>). */
static const char *
bracket(const char *s, char *buf, size_t len)
{
	size_t n = strlen(s);

	if (n + 3 > len) {	/* truncated as snprintf(buf, len, "<%s>", s) does */
		buf[0] = '<';
		memcpy(buf + 1, s, len - 2);
		buf[len - 1] = 0;
		return buf;
	}
	buf[0] = '<';
	memcpy(buf + 1, s, n);
	buf[n + 1] = '>';
	buf[n + 2] = 0;
	return buf;
}

static void
decide(struct rc *rc, const struct request *r, struct verdict *v)
{
	struct client c = { r->client, relay_env(), r->sasl && *r->sasl };
	char tmp[1100];
	const char *st = r->state ? r->state : "";

	/* check_rcpt() begins with check_client()'s decision: calling both
	 * made two access lookups for the same verdict */
	if (!strcmp(st, "RCPT") && r->rcpt) {
		check_rcpt(rc, &c, bracket(r->rcpt, tmp, sizeof tmp), v);
		return;
	}
	check_client(rc, &c, v);
	if (v->kind != V_ACCEPT)
		return;
	if (!strcmp(st, "MAIL") && r->sender)
		check_sender(rc, bracket(r->sender, tmp, sizeof tmp), v);
}

static void
refresh_tables(void *rc)
{
	rc_refresh(rc);
}

/* One request of the event-driven server (forkserver_serve_policy):
 * the same checks as read_request, the same answer. */
static int
serve_request(void *arg, char *req, size_t len, struct buf *out)
{
	static struct request r = { BUF_INIT, NULL, NULL, NULL, NULL, NULL };
	struct rc *rc = arg;
	struct verdict v;
	size_t off, n;

	for (off = 0; off < len; off += n + 1) {
		n = strlen(req + off);
		if (!memchr(req + off, '=', n))
			return -1;
	}
	buf_clear(&r.raw);
	buf_add(&r.raw, req, len);
	parse_request(&r);
	decide(rc, &r, &v);
	if (rc->verbose)
		log_info("%s %s %s%s: %s", r.state ? r.state : "?", r.client ? r.client : "-",
		    r.rcpt ? r.rcpt : "", v.kind == V_REJECT || v.kind == V_DEFER ? " rejected" : "",
		    v.why);
	answer_req(out, &v, &r);
	return 0;
}

static int
policy_mode(struct rc *rc)
{
	struct request r = { BUF_INIT, NULL, NULL, NULL, NULL, NULL };
	struct verdict v;
	int got;

	if (forkserver_fd() >= 0)	/* smtpd-lite -l: every session, one process */
		forkserver_serve_policy(serve_request, REQ_MAX, refresh_tables, rc);
	while ((got = read_request(&r)) > 0) {
		rc_refresh(rc);
		decide(rc, &r, &v);
		if (rc->verbose)
			log_info("%s %s %s%s: %s", r.state ? r.state : "?",
			    r.client ? r.client : "-", r.rcpt ? r.rcpt : "",
			    v.kind == V_REJECT || v.kind == V_DEFER ? " rejected" : "", v.why);
		answer(&v, &r);
		/* flush only when no further request is already buffered */
		if (in.pos >= in.end && fflush(stdout) == EOF)
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
