/* check.h: minimal TAP-style checks for the unit tests in t/unit (see t/run). */
#ifndef MX_CHECK_H
#define MX_CHECK_H
#include <stdio.h>
#include <string.h>
static int check_failed;
#define CHECK(cond, ...) do { \
	if (cond) { printf("ok - "); } else { printf("not ok - "); check_failed++; } \
	printf(__VA_ARGS__); printf("\n"); } while (0)
#define CHECK_STR(got, want, what) do { const char *g_ = (got), *w_ = (want); \
	CHECK(g_ && !strcmp(g_, w_), "%s", what); \
	if (!g_ || strcmp(g_, w_)) printf("#   got: %s\n#   want: %s\n", g_ ? g_ : "(null)", w_); } while (0)
#define CHECK_DONE() return check_failed ? 1 : 0
#endif
