/* chain.c: ruleproc as a filter in the delivery chain.
 * Envelope from the environment (SENDER, RECIPIENTS, TCPREMOTEIP,
 * TCPREMOTEHOST, HELO, AUTHUSER, MXID), message on stdin (a pipe or a
 * seekable file), then exec PROG with the new RECIPIENTS/FOLDERS and
 * the (possibly rewritten) message on stdin. */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "fdio.h"
#include "forkserver.h"
#include "log.h"
#include "msgio.h"
#include "ruleproc.h"

static void __attribute__((noreturn))
fail(int code, const char *status)
{
	/* the last stderr line is the reason smtpd-lite turns into a reply */
	fprintf(stderr, "%s\n", status);
	fflush(stderr);
	forkserver_exit(code);
}

static const char *
env(const char *n)
{
	const char *v = getenv(n);
	return v && *v ? v : NULL;
}

/* Replace our recipients' lines in an inherited FOLDERS value. */
static void
merge_folders(struct buf *out, const char *old, const struct buf *ours)
{
	struct buf res = BUF_INIT;

	while (old && *old) {
		size_t l = strcspn(old, "\n");
		const char *tab = memchr(old, '\t', l);
		int dup = 0;
		if (tab) {
			size_t al = (size_t)(tab - old), off = 0;
			while (off < ours->len) {
				const char *nl = memchr(ours->s + off, '\n', ours->len - off);
				size_t ll = nl ? (size_t)(nl - (ours->s + off)) : ours->len - off;
				if (ll > al && ours->s[off + al] == '\t' && !strncasecmp(ours->s + off, old, al))
					dup = 1;
				off += ll + 1;
			}
		}
		if (!dup && l) {
			buf_add(&res, old, l);
			buf_addc(&res, '\n');
		}
		old += l;
		if (*old)
			old++;
	}
	if (ours->len)
		buf_add(&res, ours->s, ours->len);
	while (res.len && res.s[res.len - 1] == '\n')
		res.s[--res.len] = 0;
	buf_clear(out);
	if (res.len)
		buf_add(out, res.s, res.len);
	buf_free(&res);
}

/* Run as a fork server (smtpd-lite -l): the next program runs as one
 * too when it can (deliver can), else each worker execs it as before. */
static struct {
	char **argv;		/* the next program; NULL: not a fork server */
	int ctl;		/* its control socket, -1 none */
	pid_t pid;
} srv = { NULL, -1, 0 };

struct chain_ctx {
	const struct opts *o;
	struct settings *set;
	struct loaded *l;
	char **argv;		/* the next program */
};

extern char **environ;

static void
next_start(void)
{
	srv.ctl = forkserver_start(srv.argv, environ, &srv.pid);
	if (srv.ctl < 0)
		log_info("%s does not run as a fork server: exec'ed per message", srv.argv[0]);
}

/* Before each dispatch: the rules as they are now (for new workers),
 * and a next server that is still there. */
static void
server_refresh(void *arg)
{
	const struct chain_ctx *ctx = arg;

	rp_refresh(ctx->o, ctx->l);
	if (srv.ctl >= 0 && kill(srv.pid, 0) < 0 && errno == ESRCH) {
		log_warn("the %s server is gone; starting it again", srv.argv[0]);
		close(srv.ctl);
		next_start();
	}
}

static void
relay_line(void *arg, const char *line, size_t len)
{
	struct buf b = BUF_INIT;

	(void)arg;
	buf_add(&b, line, len);
	buf_addc(&b, '\n');
	/* through stderr's buffer: with our own lines and status (log_hold) */
	fwrite(b.s, 1, b.len, stderr);
	buf_free(&b);
}

/* Hand the message (fd 0) and the environment to the next program's
 * server and end with its exit code; returns only when the request
 * cannot even be sent (the caller execs the program instead). */
static void
next_via_server(long long timeout_s)
{
	long long deadline = fs_now_ms() + timeout_s * 1000;
	uint64_t nonce = 0;
	int conv, st;

	if ((conv = forkserver_request(srv.ctl, FS_CHAIN, 0, environ, deadline, &nonce)) < 0) {
		log_warnsys("the %s server", srv.argv[0]);
		return;
	}
	st = forkserver_collect(conv, nonce, relay_line, NULL, deadline);
	close(conv);
	if (st < 0) {
		log_warnsys("no answer from the %s server", srv.argv[0]);
		fail(EXIT_TEMP, "4.3.0 ruleproc: the next program did not finish, try again later");
	}
	forkserver_exit(st);
}

static int chain_one(void *arg);

int
chain_mode(const struct opts *o, char **argv)
{
	static struct settings set;
	static struct loaded l;
	struct chain_ctx ctx = { o, &set, &l, argv };
	char err[800];

	if (settings_load(&set, o->confdir, err, sizeof err) < 0) {
		log_warn("%s", err);
		fail(EXIT_TEMP, "4.3.0 ruleproc: configuration error");
	}
	if (rp_load(o, &l, err, sizeof err) < 0) {
		log_warn("%s", err);
		fail(EXIT_TEMP, "4.3.0 ruleproc: rules configuration error, try again later");
	}
	if (forkserver_fd() >= 0) {
		srv.argv = argv;
		next_start();
		forkserver_serve_workers(FS_CHAIN, set.timeout_chain, FS_MAX_USE, server_refresh, chain_one,
		    &ctx);
	}
	return chain_one(&ctx);
}

/* Added headers without a copy of the message: when the next program
 * is deliver, the fields go to it in MXHEADERS with their place,
 * MXHEADERS_AT (the offset of the blank line that ends the header), and
 * deliver writes them there (deliver(8)); the same bytes as a
 * rewrite, one copy of the message less (issue 7). Not for a subject
 * tag, a header without a blank line after it, or any other next
 * program, which all get the rewritten message as before. Returns 1
 * if handed that way. */
static int
headers_to_deliver(char **argv, const struct msgsrc *src, const struct rmsg *m,
    const struct rresult *res)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	struct buf h = BUF_INIT;
	char at[32], c = 0;
	int i, ok = 0;

	if (strcmp(base, "deliver") || res->tag || res->nh == 0 || m->hdr_end < 0 ||
	    m->hdr_end >= (long long)m->size ||
	    pread(src->spooled ? src->fd : 0, &c, 1, m->hdr_end) != 1 || c != '\n')
		return 0;
	for (i = 0; i < res->nh; i++)
		buf_printf(&h, "%s: %s\n", res->hnames[i], res->hvals[i]);
	snprintf(at, sizeof at, "%lld", m->hdr_end);
	ok = setenv("MXHEADERS", h.s, 1) == 0 && setenv("MXHEADERS_AT", at, 1) == 0;
	if (!ok) {
		unsetenv("MXHEADERS");
		unsetenv("MXHEADERS_AT");
	}
	buf_free(&h);
	return ok;
}

/* What a message held, given back before it is handed on: a worker
 * serves a hundred messages, and the hand-over ends each with a
 * longjmp (forkserver_exit) past any free after it (140 KB a 64 KiB
 * message, each time in fresh pages). */
static void
release(struct renv *e, struct rmsg *m, struct rresult *res, struct buf *rc, struct buf *fo,
    struct buf *fm)
{
	int i;

	for (i = 0; i < e->nrcpt; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free((char *)e->sender);
	memset(e, 0, sizeof *e);
	rmsg_free(m);
	rresult_free(res);
	buf_free(rc);
	buf_free(fo);
	buf_free(fm);
}

/* One message: fd 0, the envelope in the environment. Ends by handing
 * it on (the next program's server, else exec), or fail(). */
static int
chain_one(void *arg)
{
	const struct chain_ctx *ctx = arg;
	const struct opts *o = ctx->o;
	struct loaded *lp = ctx->l;
	char **argv = ctx->argv;
	struct renv e;
	struct rresult res;
	struct rmsg m;
	struct msgsrc src;
	char err[800];
	int scanned = 0, i;
	struct buf rc = BUF_INIT, fo = BUF_INIT, fm = BUF_INIT;

	log_init("ruleproc", getenv("MXID"));
	if (srv.argv)	/* a worker: its rules as they are now */
		rp_refresh(o, lp);
	memset(&e, 0, sizeof e);
	e.sender = getenv("SENDER") ? getenv("SENDER") : "";
	{
		char *b = rp_bare(e.sender);
		e.sender = b;	/* kept to the end of the request */
	}
	e.rcpts = rp_split_rcpts(getenv("RECIPIENTS"), &e.nrcpt);
	e.client = env("TCPREMOTEIP");
	e.client_name = env("TCPREMOTEHOST");
	e.helo = env("HELO");
	e.auth = env("AUTHUSER");
	rules_when(o->when, &e.wday, &e.minute);

	msgsrc_init(&src, ctx->set->spooldir);
	src.memmax = ctx->set->spool_memory;
	rmsg_init(&m, lp->rs.body_limit);
	if (lp->rs.need_headers || lp->rs.need_body || lp->rs.need_size || lp->rs.need_attach) {
		if (msgsrc_scan(&src, &m, &lp->rs, 0) < 0)
			fail(EXIT_TEMP, "4.3.0 ruleproc: cannot read the message");
		scanned = 1;
		e.msg = &m;
	}
	rules_run(&lp->rs, &e, ST_DATA, &res, NULL);
	if (res.v == V_DELIVER && rresult_modifies(&res) && !scanned) {
		if (msgsrc_scan(&src, &m, &lp->rs, 1) < 0)
			fail(EXIT_TEMP, "4.3.0 ruleproc: cannot read the message");
		scanned = 1;
	}
	switch (res.v) {
	case V_REJECT:
	case V_TEMPFAIL: {
		const struct rule *r = &lp->rs.rules[res.rule];
		log_info("%s rule=\"%s\" line=%d sender=<%s> %d %s %s", res.v == V_REJECT ?
		    "reject" : "tempfail", r->name, r->line, e.sender, res.code, res.xcode, res.text);
		snprintf(err, sizeof err, "%s %s", res.xcode, res.text);
		fail(res.v == V_REJECT ? EXIT_PERM : EXIT_TEMP, err);
		break;
	}
	case V_DISCARD:
		log_info("discard rule=\"%s\" sender=<%s> recipients=%d",
		    res.rule >= 0 ? lp->rs.rules[res.rule].name : "(every recipient discarded)",
		    e.sender, e.nrcpt);
		forkserver_exit(0);
	case V_DELIVER:
		break;
	}
	rresult_recipients(&res, &rc, &fo);
	unsetenv("MXHEADERS");	/* only ever what we set now */
	unsetenv("MXHEADERS_AT");
	if (rresult_modifies(&res) && !headers_to_deliver(argv, &src, &m, &res)) {
		if (msgsrc_rewrite(&src, &m, &res) < 0)
			fail(EXIT_TEMP, "4.3.0 ruleproc: cannot write the changed message");
	} else if (msgsrc_rewind(&src) < 0)
		fail(EXIT_TEMP, "4.3.0 ruleproc: cannot rewind the message");
	if (rc.len && rc.s[rc.len - 1] == '\n')
		rc.s[--rc.len] = 0;
	if (setenv("RECIPIENTS", rc.s ? rc.s : "", 1) < 0)
		fail(EXIT_TEMP, "4.3.0 ruleproc: out of memory");
	merge_folders(&fm, getenv("FOLDERS"), &fo);
	if (fm.len && setenv("FOLDERS", fm.s, 1) < 0)
		fail(EXIT_TEMP, "4.3.0 ruleproc: out of memory");
	if (res.nmatched || o->verbose) {
		struct buf s = BUF_INIT;
		for (i = 0; (size_t)i < rc.len; i++)
			buf_addc(&s, rc.s[i] == '\n' ? ',' : rc.s[i]);
		log_info("deliver rules_matched=%d recipients=%s%s%s%s", res.nmatched,
		    s.s ? s.s : "", res.nh ? " headers_added" : "", res.tag ? " subject_tagged" : "",
		    fo.len ? " folders" : "");
		buf_free(&s);
	}
	if (lp->fallback)
		log_warn("filtered with the last good rules (rules.ok): fix %s", lp->why);
	release(&e, &m, &res, &rc, &fo, &fm);
	if (srv.ctl >= 0)
		next_via_server(ctx->set->timeout_chain);
	forkserver_exec(argv);	/* a worker's status is its code */
	log_warnsys("cannot run %s", argv[0]);
	fail(EXIT_TEMP, "4.3.0 ruleproc: cannot run the next program");
	return EXIT_TEMP;
}
