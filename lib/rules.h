/* rules: the SMTP Rules engine (conf/rules, see rules(5)).
 *
 * rules_parse() compiles a rules file into a read-only struct ruleset
 * (safe to share between threads: the only thing written after the
 * parse is a lazily compiled regex, under a lock); rmsg_* scans a message with bounded
 * memory (headers, MIME text parts decoded, attachment names, size);
 * rules_run() evaluates the rules for an envelope (and a message when
 * one is known) and fills a struct rresult with the verdict and the
 * changes to make. Nothing here does I/O on the message itself: the
 * callers (ruleproc's chain, policy, milter and dry-run modes) apply
 * the result.
 *
 * Evaluation model: rules are tried in file order for each recipient;
 * a rule without recipient conditions matches all recipients still in
 * play at once. The first matching rule stops processing for the
 * recipients it matched unless it says "continue". reject, tempfail
 * and discard are final. */
#ifndef MX_RULES_H
#define MX_RULES_H
#include <regex.h>
#include <stddef.h>
#include "buf.h"
#include "ipaddr.h"

/* Stages (levels): the earliest point at which a condition is known. */
enum rstage { ST_CONNECT, ST_HELO, ST_MAIL, ST_RCPT, ST_DATA };

enum cond_kind {
	C_SENDER, C_RECIPIENT, C_RCPTCOUNT, C_CLIENT, C_CLIENTNAME, C_HELO,
	C_AUTH, C_HEADER, C_SIZE, C_BODY, C_ATTACHMENT, C_TIME, C_DAY
};
enum act_kind {
	A_ACCEPT, A_REJECT, A_TEMPFAIL, A_DISCARD, A_REDIRECT, A_COPY,
	A_ADDHEADER, A_TAG, A_FOLDER
};
enum cmp_op { OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ };

enum pat_kind { PK_GLOB, PK_EXACT, PK_SUBSTR, PK_PREFIX, PK_SUFFIX, PK_ANY };
struct rpat {
	char *src;		/* as written (glob, or regex without slashes) */
	int is_re;
	int body;		/* a body pattern (compiled as lre) */
	int ready;		/* regex: 0 not compiled yet (RULES_LAZY), 1 compiled,
				 * -1 does not compile; read with rules_pat_ready() */
	regex_t re;		/* REG_ICASE; not compiled for body patterns */
	int has_re;
	regex_t lre;		/* body: the pattern lowercased, for lowercased text */
	char *need;		/* regex: lowercase literals, one of which every match
				 * contains: "a\0b\0\0" (rules_need_in) */
	size_t needlen;		/* the first one's */
	int has_lre;
	enum pat_kind kind;	/* fast paths for common globs */
	char *lit;		/* the literal part, lowercased, unescaped */
	size_t litlen;
};
struct rcidr {
	struct ipaddr ip;
	int len;
};
struct rcond {
	enum cond_kind kind;
	int neg;
	int line;
	char *hname;		/* header: field name glob ("*" any) */
	struct rpat *pats;
	int npats;
	struct rcidr *cidrs;
	int ncidrs;
	enum cmp_op op;		/* size, recipients */
	long long num;
	int from, to;		/* time: minutes since midnight, [from, to) */
	unsigned days;		/* day: bit 0 = Sunday */
};
struct raction {
	enum act_kind kind;
	int line;
	int code;		/* reject/tempfail: 550, 451... */
	char xcode[16];		/* "5.7.1" */
	char *text;		/* reply text, tag, folder, header value */
	char *hname;		/* add-header */
	char **addrs;		/* redirect, copy */
	int naddrs;
};
struct rule {
	char *name;
	int line;
	int any;		/* match any (else all) */
	int forced_data;	/* stage data */
	int cont;		/* continue after a match */
	enum rstage stage;	/* computed */
	struct rcond *conds;
	int nconds, capconds;
	struct raction *acts;
	int nacts, capacts;
	enum act_kind final;	/* A_REJECT/A_TEMPFAIL/A_DISCARD/A_ACCEPT, or -1 */
	int has_final;
	int rcpt_dep;		/* has recipient conditions */
};

#define RULES_BODY_DEFAULT (64 * 1024)
#define RULES_BODY_MAX (16 * 1024 * 1024)
#define RULES_MAX_RULES 100000
#define RULES_MAX_FILE (16 * 1024 * 1024)

struct ruleset {
	char *path;
	struct rule *rules;
	int nrules, caprules;
	int lazy;		/* parsed with RULES_LAZY */
	void *arena;		/* the parse's allocations (see rules.c) */
	size_t body_limit;	/* bytes of decoded body text scanned */
	int need_headers, need_body, need_size, need_attach;
};

/* Parse a rules file. Returns 0, or -1 with "path:line: reason" in err.
 * text/len: the file contents (need not be NUL-terminated). Every
 * regular expression is compiled (full validation). */
int rules_parse(struct ruleset *rs, const char *path, const char *text,
    size_t len, char *err, size_t errlen);
/* flags for rules_parse_flags */
#define RULES_LAZY 1	/* text known good (identical to a copy that passed
			 * rules_parse): check everything but regcomp(3); each
			 * regex is compiled on first use. One that then fails
			 * to compile makes the decision a temporary failure. */
int rules_parse_flags(struct ruleset *rs, const char *path, const char *text,
    size_t len, int flags, char *err, size_t errlen);
/* Read and parse path; -1 with err (also for a missing file, errno kept). */
int rules_parse_file(struct ruleset *rs, const char *path, char *err, size_t errlen);
void rules_free(struct ruleset *rs);
const char *rules_stage_name(enum rstage s);
const char *rules_cond_name(enum cond_kind k);
const char *rules_act_name(enum act_kind k);
/* The rule's conditions and actions back in rules(5) syntax, one line. */
void rules_cond_str(const struct rcond *c, struct buf *b);
void rules_act_str(const struct raction *a, struct buf *b);

/* Case-insensitive glob: '*' any run, '?' one byte, '\' quotes the next
 * character; anything else matches itself. Whole-string match. */
int rules_glob(const char *pat, const char *s, size_t slen);
/* Match one compiled pattern (glob fast paths or regex); s NUL-terminated.
 * A regex that does not compile never matches and marks the running
 * thread's rules_run() as broken. */
int rules_pat_match(const struct rpat *p, const char *s, size_t n);
/* A regex pattern compiled (now, if RULES_LAZY left it): 1, or 0 when
 * it does not compile. Thread-safe. */
int rules_pat_ready(const struct rpat *p);
/* Why a regex pattern does not compile ("bad regular expression /x/: ..."). */
void rules_pat_error(const struct rpat *p, char *err, size_t errlen);
/* Lowercase ASCII table. */
extern const unsigned char rules_lc[256];

/* ---- the message ---- */
#define RMSG_HDR_KEEP (1024 * 1024)	/* header bytes kept for matching */
#define RMSG_FIELD_KEEP (64 * 1024)	/* bytes of one field kept */
#define RMSG_MAX_FIELDS 20000
#define RMSG_MAX_ATTACH 256
#define RMSG_MIME_DEPTH 8

struct rfield {
	size_t name, nlen;	/* offsets into rmsg.hbuf */
	size_t val, vlen;	/* unfolded value, blanks trimmed */
	size_t dval, dvlen;	/* RFC 2047-decoded value (same as val if none) */
};

struct mime_ent {
	char type[64];		/* "text/plain" lowercased */
	char boundary[128];
	int cte;		/* 0 raw, 1 quoted-printable, 2 base64 */
	int attach;		/* has a file name */
};

struct rmsg {
	/* results */
	struct buf hbuf;	/* header names and values */
	struct rfield *f;
	int nf, capf;
	int hdr_trunc;		/* fields dropped or cut for the caps */
	long long hdr_end;	/* offset where the header section ends (blank line) */
	long long subj_colon;	/* offset just past "Subject:" of the first one, -1 */
	int hdr_done;
	struct buf body;	/* decoded text, '\n' between lines */
	struct buf lbody;	/* the same, lowercased (set by rmsg_end) */
	size_t body_limit;
	int body_trunc;
	int body_decoded;	/* some part was QP/base64-decoded */
	char *attach[RMSG_MAX_ATTACH];
	int nattach;
	unsigned long long size;
	int nul_seen, bad_b64;
	int last_nl;		/* the last byte fed was a newline */
	/* parser state */
	struct buf line;
	int line_trunc;
	long long line_start;
	struct buf field;	/* pending header field (unfolded) */
	int field_trunc;
	long long field_start;
	int in_hdr;		/* 1 top header, 2 part header, 0 body */
	struct mime_ent top, part;
	char *bstack[RMSG_MIME_DEPTH];
	int depth;
	int skip;		/* body of a non-text part or pre/epilogue */
	struct mime_ent *cur;	/* entity whose body we are in */
	int b64q;		/* base64 quantum state */
	unsigned b64v;
	int qp_soft;		/* previous QP line ended in a soft break */
	int lines;
};

void rmsg_init(struct rmsg *m, size_t body_limit);
void rmsg_feed(struct rmsg *m, const char *p, size_t n);
/* Whether rmsg_feed takes whole plain body lines at once (1; the unit
 * test turns it off to compare with the line-by-line path). */
extern int rmsg_bulk;
void rmsg_end(struct rmsg *m);
void rmsg_free(struct rmsg *m);
/* Field i's name and value (NUL-terminated in hbuf). */
#define RMSG_NAME(m, i) ((m)->hbuf.s + (m)->f[i].name)
#define RMSG_VAL(m, i) ((m)->hbuf.s + (m)->f[i].val)
#define RMSG_DVAL(m, i) ((m)->hbuf.s + (m)->f[i].dval)
/* First value of field name, or NULL. */
const char *rmsg_get(const struct rmsg *m, const char *name);

/* ---- evaluation ---- */
struct renv {
	const char *sender;	/* bare, "" for <>; NULL unknown */
	char **rcpts;		/* bare addresses */
	int nrcpt;
	const char *client;	/* IP text, NULL unknown */
	const char *client_name;	/* reverse name, NULL unknown */
	const char *helo;
	const char *auth;	/* authenticated user, NULL or "" none */
	int wday;		/* 0 Sunday */
	int minute;		/* 0..1439 local */
	const struct rmsg *msg;	/* NULL before DATA */
	int nrcpt_total;	/* recipient count for "recipients" (0: nrcpt) */
};

enum verdict { V_DELIVER, V_REJECT, V_TEMPFAIL, V_DISCARD };

struct rrcpt {
	char *addr;		/* original */
	int done;		/* a stopping rule matched */
	int discard;
	char **to;		/* redirect targets (NULL: itself) */
	int nto;
	char *folder;
};

struct rresult {
	enum verdict v;
	int rule;		/* index of the deciding rule, -1 none */
	int code;
	char xcode[16];
	char text[512];
	struct rrcpt *r;
	int nr;
	char **copies;
	int ncopies;
	char **hnames, **hvals;	/* headers to add */
	int nh;
	char *tag;		/* subject tag */
	int nmatched;		/* rules that matched */
	int undecided;		/* 1 + index of the later-stage rule that stopped the run, or 0 */
	int broken;		/* V_TEMPFAIL because rule `rule` has a regex that
				 * does not compile (RULES_LAZY); logged */
};

/* Run the rules up to stage `upto` (ST_DATA: all). Rules of a later
 * stage are skipped, except that one that could stop processing ends
 * the run (res->undecided), so an early verdict never contradicts the
 * one given at DATA. trace, when not NULL, gets a human explanation. */
void rules_run(const struct ruleset *rs, const struct renv *e, enum rstage upto,
    struct rresult *res, struct buf *trace);
void rresult_free(struct rresult *res);
/* The envelope stages (bit 1 << ST_CONNECT .. ST_RCPT) at which
 * rules_run() can end in a reject or tempfail: a rule with that final
 * action is reached at that stage. Elsewhere a policy answer is always
 * DUNNO (a regex that fails to compile then shows at DATA instead). */
unsigned rules_envelope_stages(const struct ruleset *rs);
/* Final recipient list (redirects applied, copies added, duplicates
 * removed, discarded dropped); *folders gets "addr\tFolder" lines. */
void rresult_recipients(const struct rresult *res, struct buf *rcpts, struct buf *folders);
/* Whether the message itself changes (headers, subject). */
int rresult_modifies(const struct rresult *res);
/* Local weekday and minute for now, or from "DAY HH:MM"; -1 bad. */
int rules_when(const char *spec, int *wday, int *minute);
/* Escape client bytes for the trace and logs (printable, max n chars). */
void rules_esc(struct buf *b, const char *s, size_t len, size_t max);
#endif
