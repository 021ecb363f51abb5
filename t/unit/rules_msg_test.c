/* Unit tests: the message scanner (lib/rules_msg.c): header unfolding,
 * RFC 2047, MIME decoding, attachments, and bad input with bounded
 * memory. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "rules.h"

static void
scan(struct rmsg *m, const char *s, size_t n, size_t limit, size_t chunk)
{
	size_t off = 0;

	rmsg_init(m, limit);
	while (off < n) {
		size_t k = n - off < chunk ? n - off : chunk;
		rmsg_feed(m, s + off, k);
		off += k;
	}
	rmsg_end(m);
}


/* Everything rmsg_feed leaves, compared between two scans of one text. */
static int
same_scan(const struct rmsg *a, const struct rmsg *b, char *why, size_t whylen)
{
#define DIFF(f) if (a->f != b->f) { snprintf(why, whylen, #f " %lld != %lld", \
	(long long)a->f, (long long)b->f); return 0; }
	DIFF(body.len) DIFF(lbody.len) DIFF(lines) DIFF(size) DIFF(nul_seen) DIFF(body_trunc)
	DIFF(last_nl) DIFF(line_start) DIFF(hdr_end) DIFF(nf) DIFF(hdr_trunc) DIFF(body_decoded)
	DIFF(nattach) DIFF(subj_colon) DIFF(bad_b64)
#undef DIFF
	if ((a->body.s && a->body.s[a->body.len]) || (b->body.s && b->body.s[b->body.len])) {
		snprintf(why, whylen, "body not NUL-terminated");
		return 0;
	}
	if (a->body.len && memcmp(a->body.s, b->body.s, a->body.len)) {
		snprintf(why, whylen, "body bytes differ");
		return 0;
	}
	if (a->lbody.len && memcmp(a->lbody.s, b->lbody.s, a->lbody.len)) {
		snprintf(why, whylen, "lowercased body bytes differ");
		return 0;
	}
	return 1;
}

/* A random message: a header, then a plain, multipart or encoded body
 * of lines of random bytes (CR, NUL, upper case, long lines). */
static void
random_message(struct buf *b, unsigned *seed)
{
	int kind = rand_r(seed) % 4, nl = rand_r(seed) % 300;

	buf_clear(b);
	buf_adds(b, "From: a@example.net\nSubject: random\n");
	if (kind == 1)
		buf_adds(b, "Content-Type: multipart/mixed; boundary=zz\n\n--zz\n"
		    "Content-Type: text/plain\n\n");
	else if (kind == 2)
		buf_adds(b, "Content-Transfer-Encoding: quoted-printable\n\n");
	else if (kind == 3 && rand_r(seed) % 2)
		buf_adds(b, "X-No-Blank: header ends at a body line\n");
	else
		buf_adds(b, "\n");
	for (int i = 0; i < nl; i++) {
		int len = rand_r(seed) % 20 == 0 ? 16 * 1024 - 2 + rand_r(seed) % 5 :
		    rand_r(seed) % 100;
		for (int k = 0; k < len; k++) {
			int r = rand_r(seed) % 40;
			buf_addc(b, r == 0 ? '\r' : r == 1 ? '\0' : r < 10 ? 'A' + r : 'a' + r % 26);
		}
		buf_adds(b, rand_r(seed) % 3 ? "\n" : "\r\n");
		if (kind == 1 && rand_r(seed) % 50 == 0)
			buf_adds(b, "--zz\nContent-Type: text/html\n\n");
	}
	if (rand_r(seed) % 2)
		buf_adds(b, "no newline at the end");
}

static int
body_has(const struct rmsg *m, const char *needle)
{
	return m->body.s && strstr(m->body.s, needle) != NULL;
}

static const char mime[] =
    "From: a@example.net\n"
    "Subject: =?UTF-8?B?V2luIGEgcHJpemU=?= =?ISO-8859-1?Q?_n=F6w?=\n"
    "Content-Type: multipart/mixed;\n"
    "\tboundary=\"outer\"\n"
    "\n"
    "preamble to skip\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Cheap pi=\n"
    "lls =3D here\n"
    "--inner\n"
    "Content-Type: text/html\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "PGI+U2VjcmV0IG9mZmVyPC9iPgo=\n"
    "--inner--\n"
    "--outer\n"
    "Content-Type: application/octet-stream; name=\"invoice.pdf.exe\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "--outer\n"
    "Content-Type: application/zip\n"
    "Content-Disposition: attachment; filename*=utf-8''report%202024.zip\n"
    "\n"
    "UEsDBA==\n"
    "--outer--\n"
    "epilogue to skip\n";

int
main(void)
{
	struct rmsg m, m1;
	struct buf b = BUF_INIT;
	const char *s;
	int i;

	s = "Received: from x\n\tby y; Sun, 1 Jan 2026\nSubject:  Hello   there \nX-Empty:\n\nbody line\n";
	scan(&m, s, strlen(s), 1024, 1 << 20);
	CHECK(m.nf == 3, "three fields (%d)", m.nf);
	CHECK_STR(rmsg_get(&m, "received"), "from x\tby y; Sun, 1 Jan 2026", "folded field unfolded");
	CHECK_STR(rmsg_get(&m, "SUBJECT"), "Hello   there", "value trimmed");
	CHECK_STR(rmsg_get(&m, "X-Empty"), "", "empty value");
	CHECK(m.hdr_end == (long long)(strstr(s, "\n\n") - s + 1), "header end offset");
	CHECK(m.subj_colon == (long long)(strstr(s, "Subject:") - s + 8), "subject colon offset");
	CHECK(body_has(&m, "body line"), "plain body scanned");
	CHECK(m.size == strlen(s), "size counted");
	rmsg_free(&m);

	scan(&m, mime, sizeof mime - 1, 65536, 1 << 20);
	CHECK_STR(RMSG_DVAL(&m, 1), "Win a prize n\xf6w", "RFC 2047 subject decoded (B and Q, blanks between words dropped)");
	CHECK(body_has(&m, "Cheap pills = here"), "quoted-printable part decoded with soft break");
	CHECK(body_has(&m, "<b>Secret offer</b>"), "base64 text part decoded");
	CHECK(!body_has(&m, "preamble") && !body_has(&m, "epilogue"), "preamble and epilogue skipped");
	CHECK(!body_has(&m, "TVqQ") && !body_has(&m, "MZ"), "binary part not scanned");
	CHECK(m.nattach == 2, "two attachments (%d)", m.nattach);
	CHECK(m.nattach > 0 && !strcmp(m.attach[0], "invoice.pdf.exe"), "Content-Type name=");
	CHECK(m.nattach > 1 && !strcmp(m.attach[1], "report 2024.zip"), "RFC 2231 filename*= decoded");
	CHECK(m.body_decoded, "marked decoded");
	/* the same message fed one byte at a time gives the same result */
	scan(&m1, mime, sizeof mime - 1, 65536, 1);
	CHECK(m1.body.len == m.body.len && !memcmp(m1.body.s, m.body.s, m.body.len) &&
	    m1.nattach == m.nattach && m1.nf == m.nf, "chunking does not change the scan");
	rmsg_free(&m1);
	rmsg_free(&m);

	/* body limit */
	buf_clear(&b);
	buf_adds(&b, "Subject: big\n\n");
	for (i = 0; i < 10000; i++)
		buf_adds(&b, "0123456789 line of text\n");
	scan(&m, b.s, b.len, 4096, 8192);
	CHECK(m.body.len <= 4096 && m.body_trunc, "body scan stops at the limit");
	CHECK(m.size == b.len, "size still counts every byte");
	rmsg_free(&m);

	/* 10,000 header lines */
	buf_clear(&b);
	for (i = 0; i < 10000; i++)
		buf_printf(&b, "X-Line-%d: value %d\n", i, i);
	buf_adds(&b, "Subject: last\n\nbody\n");
	scan(&m, b.s, b.len, 1024, 65536);
	CHECK(m.nf == 10001 && !m.hdr_trunc, "10,000 header lines kept (%d)", m.nf);
	CHECK_STR(rmsg_get(&m, "subject"), "last", "field after 10,000 lines found");
	rmsg_free(&m);

	/* 100,000 header lines: capped */
	buf_clear(&b);
	for (i = 0; i < 100000; i++)
		buf_adds(&b, "X: y\n");
	buf_adds(&b, "\nbody\n");
	scan(&m, b.s, b.len, 1024, 65536);
	CHECK(m.nf == RMSG_MAX_FIELDS && m.hdr_trunc, "field count capped at %d", RMSG_MAX_FIELDS);
	CHECK(body_has(&m, "body"), "body still found after the capped header");
	rmsg_free(&m);

	/* a 1 MiB header line */
	buf_clear(&b);
	buf_adds(&b, "Subject: ");
	for (i = 0; i < 1024 * 1024; i++)
		buf_addc(&b, 'a' + i % 26);
	buf_adds(&b, "\nX-After: yes\n\nbody\n");
	scan(&m, b.s, b.len, 1024, 65536);
	CHECK(m.hdr_trunc, "1 MiB header line marked truncated");
	CHECK(m.hbuf.len <= RMSG_HDR_KEEP, "header memory bounded (%zu)", m.hbuf.len);
	CHECK_STR(rmsg_get(&m, "X-After"), "yes", "next field still parsed");
	CHECK(m.subj_colon == 8, "subject offset known for tagging");
	rmsg_free(&m);

	/* invalid base64 and NULs */
	s = "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!!***%%%\naGVsbG8=\n$$$\n";
	scan(&m, s, strlen(s), 1024, 3);
	CHECK(m.bad_b64 && body_has(&m, "hello"), "invalid base64 skipped, valid part decoded");
	rmsg_free(&m);
	{
		static const char nul[] = "Subject: a\0b\n\nbo\0dy\n";
		scan(&m, nul, sizeof nul - 1, 1024, 1 << 20);
		CHECK(m.nul_seen, "NULs noticed");
		CHECK_STR(rmsg_get(&m, "subject"), "a b", "NUL in a header matched as a space");
		CHECK(body_has(&m, "bo dy"), "NUL in the body matched as a space");
		rmsg_free(&m);
	}

	/* malformed header: a line without a colon starts the body */
	s = "Subject: x\nthis is not a header\nX-Not: in header\n";
	scan(&m, s, strlen(s), 1024, 1 << 20);
	CHECK(m.nf == 1, "header ends at a non-field line");
	CHECK(m.hdr_end == 11, "header end is that line");
	CHECK(body_has(&m, "X-Not: in header"), "the rest is body");
	rmsg_free(&m);

	/* headers only, no newline at the end */
	s = "Subject: x\nFrom: y";
	scan(&m, s, strlen(s), 1024, 1 << 20);
	CHECK(m.nf == 2 && m.hdr_end == (long long)strlen(s) && !m.last_nl, "header-only message");
	rmsg_free(&m);

	/* empty input; CRLF input */
	scan(&m, "", 0, 1024, 1);
	CHECK(m.nf == 0 && m.size == 0, "empty message");
	rmsg_free(&m);
	s = "Subject: crlf\r\n\r\nline\r\n";
	scan(&m, s, strlen(s), 1024, 1 << 20);
	CHECK_STR(rmsg_get(&m, "subject"), "crlf", "CRLF header");
	CHECK(m.body.s && !strcmp(m.body.s, "line\n"), "CRLF body");
	rmsg_free(&m);

	/* deep MIME nesting is bounded */
	buf_clear(&b);
	for (i = 0; i < 50; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
	buf_adds(&b, "Content-Type: text/plain\n\ndeep text\n");
	scan(&m, b.s, b.len, 1024, 1 << 20);
	CHECK(m.depth <= RMSG_MIME_DEPTH, "MIME depth bounded");
	rmsg_free(&m);

	/* the lowercased body: rules_lc of every byte, whatever its place
	 * in a 16-byte block (every byte value but LF, CR and NUL) */
	{
		int bad = 0;
		buf_clear(&b);
		buf_adds(&b, "Subject: bytes\n\n");
		for (int shift = 0; shift < 17; shift++) {
			for (int k = 0; k < shift; k++)
				buf_addc(&b, 'Q');
			for (int c = 1; c < 256; c++)
				if (c != '\n' && c != '\r')
					buf_addc(&b, (char)c);
			buf_addc(&b, '\n');
		}
		scan(&m, b.s, b.len, 1 << 20, 1 << 20);
		for (size_t k = 0; k < m.body.len; k++)
			if ((unsigned char)m.lbody.s[k] != rules_lc[(unsigned char)m.body.s[k]])
				bad++;
		CHECK(m.lbody.len == m.body.len && m.body.len > 4000 && !bad,
		    "lowercased body is rules_lc of each byte (%zu bytes, %d wrong)", m.body.len, bad);
		rmsg_free(&m);
	}

	/* whole plain lines in bulk: the same as line by line, for random
	 * messages, chunk sizes and body limits */
	{
		unsigned seed = 7;
		int bad = 0;
		char why[200] = "";
		for (i = 0; i < 400 && !bad; i++) {
			struct rmsg lm;
			size_t limits[] = { 1, 100, 4096, 65536, 1 << 24 };
			size_t chunks[] = { 1, 7, 100, 4096, 65536, 1 << 20 };
			size_t limit = limits[rand_r(&seed) % 5], chunk = chunks[rand_r(&seed) % 6];
			random_message(&b, &seed);
			rmsg_bulk = 1;
			scan(&m, b.s, b.len, limit, chunk);
			rmsg_bulk = 0;
			scan(&lm, b.s, b.len, limit, chunk);
			rmsg_bulk = 1;
			if (!same_scan(&m, &lm, why, sizeof why)) {
				bad = 1;
				printf("#   message %d (%zu bytes, limit %zu, chunks of %zu): %s\n", i,
				    b.len, limit, chunk, why);
			}
			rmsg_free(&m);
			rmsg_free(&lm);
		}
		CHECK(!bad, "400 random messages: bulk body lines scan as line by line");
	}

	buf_free(&b);
	CHECK_DONE();
}
