/* pstages.c: see pstages.h. */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "pstages.h"

static const char *const names[] = { "connect", "helo", "mail", "rcpt" };

int
pstages_parse(const char *s, unsigned *mask)
{
	unsigned m = 0;

	if (!strcasecmp(s, "none")) {
		*mask = 0;
		return 0;
	}
	if (!*s)
		return -1;
	while (*s) {
		size_t l = strcspn(s, ","), i;
		for (i = 0; i < 4; i++)
			if (l == strlen(names[i]) && !strncasecmp(s, names[i], l))
				break;
		if (i == 4)
			return -1;
		m |= 1u << i;
		s += l;
		if (*s == ',' && !*++s)
			return -1;
	}
	*mask = m;
	return 0;
}

void
pstages_reply(struct buf *out, unsigned mask)
{
	const char *sep = "";
	int i;

	buf_adds(out, PSTAGES_ATTR "=");
	for (i = 0; i < 4; i++)
		if (mask & (1u << i)) {
			buf_adds(out, sep);
			buf_adds(out, names[i]);
			sep = ",";
		}
	buf_adds(out, *sep ? "\n" : "none\n");
}

int
pstages_asked(const char *req, size_t len)
{
	size_t off;

	for (off = 0; off < len; off += strlen(req + off) + 1)
		if (!strcmp(req + off, PSTAGES_QUERY))
			return 1;
	return 0;
}
