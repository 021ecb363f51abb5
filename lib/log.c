#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define LIBBSD_NETBSD_VIS 1
#include <vis.h>

#include "log.h"

/* The only global state: who we are, for the log prefix. */
static char log_name[64] = "mx";
int log_verbose = 1;

void
log_init(const char *prog, const char *id)
{
	if (id && *id)
		snprintf(log_name, sizeof log_name, "%s[%s]", prog, id);
	else
		strlcpy(log_name, prog, sizeof log_name);
}

const char *
log_prog(void)
{
	return log_name;
}

static int held;

void
log_hold(int on)
{
	held = on;
}

static void
log_out(const char *level, int err, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	n = snprintf(line, sizeof line, "%s: %s%s", log_name, level, *level ? ": " : "");
	if (n < 0 || (size_t)n >= sizeof line)
		n = 0;
	vsnprintf(line + n, sizeof line - n, fmt, ap);
	if (err) {
		strlcat(line, ": ", sizeof line);
		strlcat(line, strerror(err), sizeof line);
	}
	strlcat(line, "\n", sizeof line);
	fputs(line, stderr);
	if (!held || (*level && *level != 'd'))	/* warning, fatal: now */
		fflush(stderr);
}

#define LOGFN(name, level, cond, witherr) \
void name(const char *fmt, ...) { \
	int e = errno; va_list ap; \
	if (!(cond)) return; \
	va_start(ap, fmt); log_out(level, witherr ? e : 0, fmt, ap); va_end(ap); \
	errno = e; }

LOGFN(log_info, "", log_verbose >= 1, 0)
LOGFN(log_debug, "debug", log_verbose >= 3, 0)
LOGFN(log_warn, "warning", 1, 0)
LOGFN(log_warnsys, "warning", 1, 1)

void
die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_out("fatal", 0, fmt, ap);
	va_end(ap);
	exit(code);
}

void
diesys(int code, const char *fmt, ...)
{
	int e = errno;
	va_list ap;

	va_start(ap, fmt);
	log_out("fatal", e, fmt, ap);
	va_end(ap);
	exit(code);
}

char *
log_esc(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t i, o = 0;

	if (dstlen == 0)
		return dst;
	for (i = 0; i < srclen; i++) {
		char tmp[5];
		unsigned char c = (unsigned char)src[i];
		size_t l;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			tmp[0] = (char)c;
			tmp[1] = 0;
		} else
			vis(tmp, c, VIS_CSTYLE | VIS_OCTAL, 0);
		l = strlen(tmp);
		if (o + l + 4 > dstlen) {
			strlcpy(dst + o, "...", dstlen - o);
			return dst;
		}
		memcpy(dst + o, tmp, l);
		o += l;
	}
	dst[o] = 0;
	return dst;
}
