/* rules_msg.c: scan a message for the rules with bounded memory.
 *
 * Fed in arbitrary chunks (rmsg_feed); splits lines itself, keeping at
 * most RMSG_FIELD_KEEP bytes of a header line and BODY_LINE_KEEP of a
 * body line. Headers are unfolded and kept up to RMSG_HDR_KEEP bytes;
 * RFC 2047 encoded words are decoded into a second copy of the value.
 * The body is followed through MIME (nested multipart up to
 * RMSG_MIME_DEPTH): text parts are decoded (quoted-printable, base64)
 * into m->body up to body_limit bytes, other parts are skipped, and the
 * file names of parts (Content-Type name=, Content-Disposition
 * filename=, RFC 2231 filename*=) are collected as attachments. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "buf.h"
#include "rules.h"

#define BODY_LINE_KEEP (16 * 1024)

void
rmsg_init(struct rmsg *m, size_t body_limit)
{
	memset(m, 0, sizeof *m);
	m->subj_colon = -1;
	m->hdr_end = -1;
	m->in_hdr = 1;
	m->body_limit = body_limit;
	m->last_nl = 1;
}

void
rmsg_free(struct rmsg *m)
{
	int i;

	buf_free(&m->hbuf);
	buf_free(&m->body);
	buf_free(&m->lbody);
	buf_free(&m->line);
	buf_free(&m->field);
	free(m->f);
	for (i = 0; i < m->nattach; i++)
		free(m->attach[i]);
	for (i = 0; i < m->depth; i++)
		free(m->bstack[i]);
	memset(m, 0, sizeof *m);
}

const char *
rmsg_get(const struct rmsg *m, const char *name)
{
	int i;

	for (i = 0; i < m->nf; i++)
		if (!strcasecmp(RMSG_NAME(m, i), name))
			return RMSG_VAL(m, i);
	return NULL;
}

/* ---- decoders ---- */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode RFC 2047 encoded words in s into out (raw bytes, no charset
 * conversion); blanks between two encoded words are dropped. Returns 1
 * if anything was decoded. */
static int
decode_2047(const char *s, size_t n, struct buf *out)
{
	size_t i = 0, pend_ws = 0, ws_start = 0;
	int any = 0, prev_enc = 0;

	while (i < n) {
		if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
			/* =?charset?E?text?= */
			size_t q1, q2, end;
			const char *e;
			q1 = i + 2;
			while (q1 < n && s[q1] != '?' && s[q1] != ' ')
				q1++;
			if (q1 + 2 < n && s[q1] == '?' && s[q1 + 2] == '?' &&
			    strchr("BbQq", s[q1 + 1])) {
				q2 = q1 + 3;
				e = NULL;
				for (end = q2; end + 1 < n; end++)
					if (s[end] == '?' && s[end + 1] == '=') {
						e = s + end;
						break;
					}
				if (e) {
					char enc = (char)toupper((unsigned char)s[q1 + 1]);
					size_t k;
					if (!prev_enc && pend_ws)
						buf_add(out, s + ws_start, pend_ws);
					pend_ws = 0;
					if (enc == 'B') {
						unsigned v = 0;
						int bits = 0;
						for (k = q2; k < end; k++) {
							int d = b64_value((unsigned char)s[k]);
							if (d < 0)
								continue;
							v = (v << 6) | (unsigned)d;
							bits += 6;
							if (bits >= 8) {
								bits -= 8;
								buf_addc(out, (char)((v >> bits) & 0xff));
							}
						}
					} else {
						for (k = q2; k < end; k++) {
							if (s[k] == '_')
								buf_addc(out, ' ');
							else if (s[k] == '=' && k + 2 < end &&
							    hexval((unsigned char)s[k + 1]) >= 0 &&
							    hexval((unsigned char)s[k + 2]) >= 0) {
								buf_addc(out, (char)(hexval((unsigned char)s[k + 1]) * 16 +
								    hexval((unsigned char)s[k + 2])));
								k += 2;
							} else
								buf_addc(out, s[k]);
						}
					}
					any = prev_enc = 1;
					i = end + 2;
					continue;
				}
			}
		}
		if (s[i] == ' ' || s[i] == '\t') {
			if (!pend_ws)
				ws_start = i;
			pend_ws++;
			i++;
			continue;
		}
		if (pend_ws)
			buf_add(out, s + ws_start, pend_ws);
		pend_ws = 0;
		prev_enc = 0;
		buf_addc(out, s[i++]);
	}
	if (pend_ws)
		buf_add(out, s + ws_start, pend_ws);
	return any;
}

/* NULs in [b, e) become blanks (the rules work on C strings). */
static void
nuls_to_blanks(struct rmsg *m, char *b, char *e)
{
	char *z;

	for (; (z = memchr(b, 0, (size_t)(e - b))); b = z + 1) {
		*z = ' ';
		m->nul_seen = 1;
	}
}

/* The body text for the rules: CRs dropped, NULs as blanks, up to
 * body_limit. Whole runs between CRs at once (64 KiB messages). */
static void
body_put(struct rmsg *m, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *cr;
		size_t run, k;

		if (m->body.len >= m->body_limit) {
			m->body_trunc = 1;
			return;
		}
		if (p[i] == '\r') {
			i++;
			continue;
		}
		cr = memchr(p + i, '\r', n - i);
		run = cr ? (size_t)(cr - (p + i)) : n - i;
		k = run < m->body_limit - m->body.len ? run : m->body_limit - m->body.len;
		buf_add(&m->body, p + i, k);
		nuls_to_blanks(m, m->body.s + m->body.len - k, m->body.s + m->body.len);
		i += k;
	}
}

static void
body_nl(struct rmsg *m)
{
	if (m->body.len && m->body.s[m->body.len - 1] != '\n')
		body_put(m, "\n", 1);
}

/* ---- MIME parameters ---- */

/* Find parameter pname in a Content-Type/-Disposition value. Handles
 * quoted values and RFC 2231 "name*=charset'lang'%XX" (not
 * continuations). Returns 1 and the value in out. */
static int
param_get(const char *v, const char *pname, char *out, size_t outlen)
{
	size_t pl = strlen(pname);
	const char *p = v;
	int inq = 0;

	for (; *p; p++) {
		if (*p == '"')
			inq = !inq;
		if (inq || *p != ';')
			continue;
		const char *a = p + 1;
		while (*a == ' ' || *a == '\t')
			a++;
		if (strncasecmp(a, pname, pl))
			continue;
		a += pl;
		int ext = 0;
		if (*a == '*') {
			ext = 1;
			a++;
		}
		while (*a == ' ' || *a == '\t')
			a++;
		if (*a != '=')
			continue;
		a++;
		while (*a == ' ' || *a == '\t')
			a++;
		size_t o = 0;
		if (*a == '"') {
			a++;
			while (*a && *a != '"' && o + 1 < outlen) {
				if (*a == '\\' && a[1])
					a++;
				out[o++] = *a++;
			}
		} else
			while (*a && *a != ';' && *a != ' ' && *a != '\t' && o + 1 < outlen)
				out[o++] = *a++;
		out[o] = 0;
		if (ext) {
			/* charset'lang'pct-encoded */
			char *q = strchr(out, '\''), *r;
			if (q && (r = strchr(q + 1, '\''))) {
				char *w = out;
				for (r++; *r; r++) {
					if (*r == '%' && hexval((unsigned char)r[1]) >= 0 &&
					    hexval((unsigned char)r[2]) >= 0) {
						*w++ = (char)(hexval((unsigned char)r[1]) * 16 +
						    hexval((unsigned char)r[2]));
						r += 2;
					} else
						*w++ = *r;
				}
				*w = 0;
			}
		}
		return 1;
	}
	return 0;
}

static void
add_attach(struct rmsg *m, const char *name)
{
	struct buf d = BUF_INIT;
	size_t i;

	if (!*name || m->nattach >= RMSG_MAX_ATTACH)
		return;
	decode_2047(name, strlen(name), &d);
	buf_addc(&d, 0);
	for (i = 0; d.s[i]; i++)
		if ((unsigned char)d.s[i] < ' ')
			d.s[i] = ' ';
	for (i = 0; i < (size_t)m->nattach; i++)
		if (!strcmp(m->attach[i], d.s)) {
			buf_free(&d);
			return;
		}
	m->attach[m->nattach++] = d.s;
}

/* A header field of an entity (top or part): note what MIME needs. */
static void
mime_field(struct rmsg *m, struct mime_ent *e, const char *name, const char *val)
{
	char tmp[300];

	if (!strcasecmp(name, "Content-Type")) {
		size_t i = 0;
		while (val[i] && val[i] != ';' && val[i] != ' ' && val[i] != '\t' &&
		    i + 1 < sizeof e->type) {
			e->type[i] = (char)tolower((unsigned char)val[i]);
			i++;
		}
		e->type[i] = 0;
		if (param_get(val, "boundary", tmp, sizeof tmp) && strlen(tmp) < sizeof e->boundary)
			strlcpy(e->boundary, tmp, sizeof e->boundary);
		if (param_get(val, "name", tmp, sizeof tmp)) {
			add_attach(m, tmp);
			e->attach = 1;
		}
	} else if (!strcasecmp(name, "Content-Transfer-Encoding")) {
		while (*val == ' ')
			val++;
		if (!strncasecmp(val, "quoted-printable", 16))
			e->cte = 1;
		else if (!strncasecmp(val, "base64", 6))
			e->cte = 2;
		else
			e->cte = 0;
	} else if (!strcasecmp(name, "Content-Disposition")) {
		if (param_get(val, "filename", tmp, sizeof tmp)) {
			add_attach(m, tmp);
			e->attach = 1;
		}
	}
}

/* ---- headers ---- */

static void
store_field(struct rmsg *m)
{
	const char *f = m->field.s, *colon, *v, *ve, *ne;
	size_t need;
	struct rfield *rf;
	struct buf dec = BUF_INIT;
	int is_top = m->in_hdr == 1;

	if (!m->field.len)
		return;
	colon = memchr(f, ':', m->field.len);
	if (!colon)
		goto out;
	ne = colon;
	while (ne > f && (ne[-1] == ' ' || ne[-1] == '\t'))
		ne--;
	v = colon + 1;
	ve = f + m->field.len;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	if (!is_top) {
		/* part header: only MIME matters */
		char name[64], *val;
		size_t nl = (size_t)(ne - f);
		if (nl >= sizeof name)
			goto out;
		memcpy(name, f, nl);
		name[nl] = 0;
		val = xstrndup(v, (size_t)(ve - v));
		mime_field(m, &m->part, name, val);
		free(val);
		goto out;
	}
	if (memchr(v, '=', (size_t)(ve - v)))
		decode_2047(v, (size_t)(ve - v), &dec);
	need = (size_t)(ne - f) + (size_t)(ve - v) + dec.len + 3;
	if (m->nf >= RMSG_MAX_FIELDS || m->hbuf.len + need > RMSG_HDR_KEEP) {
		m->hdr_trunc = 1;
		goto out;
	}
	if (m->nf == m->capf) {
		m->capf = m->capf ? m->capf * 2 : 32;
		m->f = xreallocarray(m->f, (size_t)m->capf, sizeof *m->f);
	}
	rf = &m->f[m->nf++];
	rf->name = m->hbuf.len;
	rf->nlen = (size_t)(ne - f);
	buf_add(&m->hbuf, f, rf->nlen);
	buf_addc(&m->hbuf, 0);
	rf->val = m->hbuf.len;
	rf->vlen = (size_t)(ve - v);
	buf_add(&m->hbuf, v, rf->vlen);
	buf_addc(&m->hbuf, 0);
	if (dec.len) {
		size_t i;
		rf->dval = m->hbuf.len;
		rf->dvlen = dec.len;
		for (i = 0; i < dec.len; i++)
			if (dec.s[i] == 0 || dec.s[i] == '\n' || dec.s[i] == '\r')
				dec.s[i] = ' ';
		buf_add(&m->hbuf, dec.s, dec.len);
		buf_addc(&m->hbuf, 0);
	} else {
		rf->dval = rf->val;
		rf->dvlen = rf->vlen;
	}
	mime_field(m, &m->top, RMSG_NAME(m, m->nf - 1), RMSG_VAL(m, m->nf - 1));
out:
	buf_free(&dec);
	buf_clear(&m->field);
	m->field_trunc = 0;
}

static int
is_field_line(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ':')
			return i > 0;
		if (c <= ' ' || c >= 127) {
			/* obsolete "Name  :" (blanks before the colon) */
			size_t j = i;
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			return i > 0 && j < n && s[j] == ':';
		}
	}
	return 0;
}

/* ---- body ---- */

static void
start_entity(struct rmsg *m, struct mime_ent *e)
{
	m->b64q = 0;
	m->b64v = 0;
	m->qp_soft = 0;
	body_nl(m);
	if (!strncmp(e->type, "multipart/", 10) && e->boundary[0] && m->depth < RMSG_MIME_DEPTH) {
		m->bstack[m->depth++] = xstrdup(e->boundary);
		m->skip = 1;
		m->cur = NULL;
		return;
	}
	if (!e->type[0] || !strncmp(e->type, "text/", 5) || !strncmp(e->type, "message/", 8) ||
	    !strncmp(e->type, "multipart/", 10)) {
		m->cur = e;
		m->skip = 0;
		return;
	}
	m->cur = NULL;
	m->skip = 1;
}

static int
boundary_line(struct rmsg *m, const char *s, size_t n, int *closing)
{
	int i;

	if (n < 3 || s[0] != '-' || s[1] != '-')
		return -1;
	for (i = m->depth - 1; i >= 0; i--) {
		size_t bl = strlen(m->bstack[i]), k;
		if (n - 2 < bl || memcmp(s + 2, m->bstack[i], bl))
			continue;
		k = 2 + bl;
		*closing = 0;
		if (k + 2 <= n && s[k] == '-' && s[k + 1] == '-') {
			*closing = 1;
			k += 2;
		}
		while (k < n && (s[k] == ' ' || s[k] == '\t'))
			k++;
		if (k == n)
			return i;
	}
	return -1;
}

static void
decode_line(struct rmsg *m, const char *s, size_t n)
{
	size_t i;

	if (m->body.len >= m->body_limit) {
		m->body_trunc = 1;
		return;
	}
	switch (m->cur->cte) {
	case 1: {	/* quoted-printable */
		size_t e = n;
		int soft = 0;
		while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\t'))
			e--;
		if (e > 0 && s[e - 1] == '=') {
			soft = 1;
			e--;
		}
		m->body_decoded = 1;
		for (i = 0; i < e; i++) {
			if (s[i] == '=' && i + 2 < e && hexval((unsigned char)s[i + 1]) >= 0 &&
			    hexval((unsigned char)s[i + 2]) >= 0) {
				char c = (char)(hexval((unsigned char)s[i + 1]) * 16 +
				    hexval((unsigned char)s[i + 2]));
				body_put(m, &c, 1);
				i += 2;
			} else
				body_put(m, s + i, 1);
		}
		if (!soft)
			body_put(m, "\n", 1);
		break;
	}
	case 2: {	/* base64 */
		m->body_decoded = 1;
		if (m->b64q) {
			/* encoders write whole quanta per line: a partial one
			 * left over is garbage; resynchronise here */
			m->bad_b64 = 1;
			m->b64q = 0;
			m->b64v = 0;
		}
		for (i = 0; i < n; i++) {
			int d;
			if (s[i] == '=') {
				m->b64q = 0;	/* padding ends a quantum */
				continue;
			}
			d = b64_value((unsigned char)s[i]);
			if (d < 0) {
				if (s[i] != ' ' && s[i] != '\t')
					m->bad_b64 = 1;
				continue;
			}
			m->b64v = (m->b64v << 6) | (unsigned)d;
			if (++m->b64q == 4) {
				char o[3];
				o[0] = (char)(m->b64v >> 16);
				o[1] = (char)(m->b64v >> 8);
				o[2] = (char)m->b64v;
				body_put(m, o, 3);
				m->b64q = 0;
				m->b64v = 0;
			} else if (m->b64q > 1 && i + 1 < n && s[i + 1] == '=') {
				/* flush a final partial quantum */
				char o[2];
				if (m->b64q == 2) {
					o[0] = (char)(m->b64v >> 4);
					body_put(m, o, 1);
				} else {
					o[0] = (char)(m->b64v >> 10);
					o[1] = (char)(m->b64v >> 2);
					body_put(m, o, 2);
				}
				m->b64q = 0;
				m->b64v = 0;
			}
		}
		break;
	}
	default:
		body_put(m, s, n);
		body_put(m, "\n", 1);
	}
}

static void
body_line(struct rmsg *m, const char *s, size_t n)
{
	int lvl, closing;

	if (m->depth > 0 && (lvl = boundary_line(m, s, n, &closing)) >= 0) {
		while (m->depth > lvl + 1)
			free(m->bstack[--m->depth]);
		if (closing) {
			free(m->bstack[--m->depth]);
			m->skip = 1;	/* epilogue */
			m->cur = NULL;
			return;
		}
		memset(&m->part, 0, sizeof m->part);
		m->in_hdr = 2;
		return;
	}
	if (m->skip || !m->cur)
		return;
	decode_line(m, s, n);
}

static void
end_header(struct rmsg *m)
{
	if (m->in_hdr == 1) {
		m->hdr_done = 1;
		m->in_hdr = 0;
		start_entity(m, &m->top);
	} else {
		m->in_hdr = 0;
		start_entity(m, &m->part);
	}
}

static void
do_line(struct rmsg *m, char *s, size_t n, int trunc)
{
	if (n && s[n - 1] == '\r')
		n--;
	nuls_to_blanks(m, s, s + n);
	m->lines++;
	if (m->in_hdr) {
		if (m->in_hdr == 1 && m->lines == 1 && n > 5 && !memcmp(s, "From ", 5))
			return;	/* an mbox separator before the header */
		if (n && (s[0] == ' ' || s[0] == '\t') && m->field.len) {
			if (m->field.len + n > RMSG_FIELD_KEEP)
				m->field_trunc = m->hdr_trunc = 1;
			else
				buf_add(&m->field, s, n);
			return;
		}
		store_field(m);
		if (n == 0) {
			if (m->in_hdr == 1)
				m->hdr_end = m->line_start;
			end_header(m);
			return;
		}
		if (is_field_line(s, n)) {
			if (m->in_hdr == 1 && m->subj_colon < 0 && n >= 8 &&
			    !strncasecmp(s, "subject", 7)) {
				const char *c = memchr(s, ':', n);
				size_t k = 7;
				while (k < n && (s[k] == ' ' || s[k] == '\t'))
					k++;
				if (c && (size_t)(c - s) == k)
					m->subj_colon = m->line_start + k + 1;
			}
			buf_add(&m->field, s, n);
			if (trunc)
				m->hdr_trunc = 1;
			return;
		}
		/* not a header line: the header ended without a blank line */
		if (m->in_hdr == 1)
			m->hdr_end = m->line_start;
		end_header(m);
	}
	body_line(m, s, n);
}

/* rules_lc over n bytes, sixteen at a time (the body of a 64 KiB
 * message was a sixth of ruleproc's time byte by byte): in each byte
 * that is 'A'..'Z', set 0x20. */
static void
ascii_lower(char *dst, const char *src, size_t n)
{
	typedef unsigned char u8x16 __attribute__((vector_size(16)));
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		u8x16 x, upper;
		memcpy(&x, src + i, 16);
		upper = (u8x16)(x - (unsigned char)'A' < 26);	/* 0xff for 'A'..'Z' */
		x |= upper & 0x20;
		memcpy(dst + i, &x, 16);
	}
	for (; i < n; i++)
		dst[i] = (char)rules_lc[(unsigned char)src[i]];
}

int rmsg_bulk = 1;

/* The complete lines at p of a plain body (no MIME boundary to look
 * for, no transfer encoding), each at most BODY_LINE_KEEP bytes, going
 * into the body with one body_put: what do_line and body_put do a line
 * at a time, with one copy and a memchr per line instead of three copies
 * and four (a 64 KiB body was most of ruleproc's time). Returns the
 * bytes taken, 0 when the line-by-line path must do it (anything else,
 * or the body limit within reach). */
static size_t
bulk_lines(struct rmsg *m, const char *p, size_t n)
{
	const char *end, *s = p, *nl;
	size_t span, room, lines = 0;

	if (!rmsg_bulk || m->in_hdr || m->depth || m->skip || !m->cur || m->cur->cte ||
	    m->line.len || m->line_trunc || m->body.len >= m->body_limit)
		return 0;
	room = m->body_limit - m->body.len;	/* the lines taken fit: no cut */
	end = p + (n < room ? n : room);
	while (s < end && (nl = memchr(s, '\n', (size_t)(end - s)))) {
		if ((size_t)(nl - s) > BODY_LINE_KEEP)
			break;
		lines++;
		s = nl + 1;
	}
	if (!lines)
		return 0;
	span = (size_t)(s - p);
	body_put(m, p, span);	/* within room: nothing cut */
	m->lines += (int)lines;
	m->size += span;
	m->line_start = (long long)m->size;
	m->last_nl = 1;
	return span;
}

void
rmsg_feed(struct rmsg *m, const char *p, size_t n)
{
	while (n > 0) {
		size_t took = bulk_lines(m, p, n);
		if (took) {
			p += took;
			n -= took;
			continue;
		}
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;
		size_t cap = m->in_hdr ? RMSG_FIELD_KEEP : BODY_LINE_KEEP;

		if (m->line.len < cap) {
			size_t take = seg < cap - m->line.len ? seg : cap - m->line.len;
			buf_add(&m->line, p, take);
			if (take < seg)
				m->line_trunc = 1;
		} else if (seg)
			m->line_trunc = 1;
		m->size += seg;
		p += seg;
		n -= seg;
		if (nl) {
			do_line(m, m->line.s ? m->line.s : (char *)"", m->line.len, m->line_trunc);
			buf_clear(&m->line);
			m->line_trunc = 0;
			m->size++;
			p++;
			n--;
			m->line_start = (long long)m->size;
			m->last_nl = 1;
		} else if (seg)
			m->last_nl = 0;
	}
}

void
rmsg_end(struct rmsg *m)
{
	if (m->line.len || m->line_trunc)
		do_line(m, m->line.s, m->line.len, m->line_trunc);
	buf_clear(&m->line);
	if (m->in_hdr == 1) {
		store_field(m);
		m->hdr_end = (long long)m->size;
		m->hdr_done = 1;
		m->in_hdr = 0;
	} else if (m->in_hdr == 2)
		m->in_hdr = 0;
	if (m->hdr_end < 0)
		m->hdr_end = (long long)m->size;
	buf_clear(&m->lbody);
	if (m->body.len) {
		buf_reserve(&m->lbody, m->body.len + 1);
		ascii_lower(m->lbody.s, m->body.s, m->body.len);
		m->lbody.len = m->body.len;
		m->lbody.s[m->lbody.len] = 0;
	}
}
