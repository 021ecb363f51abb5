/* libFuzzer harness: the rules(5) parser, then a run of whatever parsed
 * over a fixed envelope and message. Build and run with t/fuzz/run.sh. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char msg[] =
    "From: a@example.net\nSubject: =?UTF-8?B?aGVsbG8=?= viagra\nList-Id: x\n"
    "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
    "cheap pills\n--b\nContent-Type: application/x; name=\"a.exe\"\n\nxx\n--b--\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ruleset rs;
	struct rmsg m;
	struct rresult res;
	struct renv e;
	struct buf trace = BUF_INIT, rc = BUF_INIT, fo = BUF_INIT;
	char err[600];
	char *rcpts[] = { "alice@example.com", "dave@example.com" };
	int st;

	if (rules_parse(&rs, "fuzz", (const char *)data, size, err, sizeof err) == 0) {
		rmsg_init(&m, rs.body_limit < 4096 ? rs.body_limit : 4096);
		rmsg_feed(&m, msg, sizeof msg - 1);
		rmsg_end(&m);
		memset(&e, 0, sizeof e);
		e.sender = "x@example.net";
		e.rcpts = rcpts;
		e.nrcpt = 2;
		e.client = "192.0.2.1";
		e.helo = "h";
		e.minute = 600;
		e.wday = 3;
		e.msg = &m;
		for (st = ST_CONNECT; st <= ST_DATA; st++) {
			rules_run(&rs, &e, (enum rstage)st, &res, st == ST_DATA ? &trace : NULL);
			rresult_recipients(&res, &rc, &fo);
			rresult_free(&res);
		}
		rmsg_free(&m);
	}
	rules_free(&rs);
	buf_free(&trace);
	buf_free(&rc);
	buf_free(&fo);
	return 0;
}
