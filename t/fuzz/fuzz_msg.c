/* libFuzzer harness: the message scanner (headers, MIME, decoders) fed
 * in chunks whose size comes from the first input byte, then a rule run
 * using every message condition. Build and run with t/fuzz/run.sh. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char rules[] =
    "body-scan 2K\n"
    "rule a\n match any\n header Subject *viagra* /win+er/\n header * *x*\n body *pills* /^cl[a-z]+m/\n"
    " attachment *.exe\n size > 1K\n tag-subject [S]\n add-header X-A b\n continue\n"
    "rule b\n recipient dave@example.com\n redirect bob@example.com\n"
    "rule c\n not header List-Id *\n folder Junk\n";
static struct ruleset rs;
static int ready;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmsg m;
	struct rresult res;
	struct renv e;
	struct buf trace = BUF_INIT;
	char err[600];
	char *rcpts[] = { "alice@example.com", "dave@example.com" };
	size_t chunk, off = 1;

	if (!ready) {
		if (rules_parse(&rs, "fuzz", rules, sizeof rules - 1, err, sizeof err) < 0)
			abort();
		ready = 1;
	}
	if (size < 1)
		return 0;
	chunk = (size_t)data[0] * 7 + 1;
	rmsg_init(&m, rs.body_limit);
	while (off < size) {
		size_t k = size - off < chunk ? size - off : chunk;
		rmsg_feed(&m, (const char *)data + off, k);
		off += k;
	}
	rmsg_end(&m);
	if (m.hdr_end < 0 || (unsigned long long)m.hdr_end > m.size || m.body.len > m.body_limit ||
	    m.hbuf.len > RMSG_HDR_KEEP + 4 * RMSG_FIELD_KEEP || (m.subj_colon >= 0 && m.subj_colon > m.hdr_end))
		abort();
	memset(&e, 0, sizeof e);
	e.sender = "";
	e.rcpts = rcpts;
	e.nrcpt = 2;
	e.msg = &m;
	rules_run(&rs, &e, ST_DATA, &res, &trace);
	rresult_free(&res);
	buf_free(&trace);
	rmsg_free(&m);
	return 0;
}
