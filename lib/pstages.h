/* pstages: stage lists of the policy protocol, "connect,helo,mail,rcpt".
 *
 * Also our one extension of Postfix's policy protocol, between
 * smtpd-lite and its built-in services (relaycheck -p, ruleproc -p):
 * smtpd-lite adds the attribute PSTAGES_QUERY to the CONNECT request it
 * sends them; a service that answers DUNNO at some stages whatever the
 * request says replies "mx_stages=LIST" beside its action, LIST the
 * stages still worth asking ("none" for none), and is not asked at the
 * others for the rest of that session (each policy round trip is two
 * context switches; issue 7). Other services never see the attribute;
 * Postfix never sends it. */
#ifndef MX_PSTAGES_H
#define MX_PSTAGES_H
struct buf;

enum { PST_CONNECT = 1, PST_HELO = 2, PST_MAIL = 4, PST_RCPT = 8 };	/* HELO: EHLO too */
#define PSTAGES_ATTR "mx_stages"
#define PSTAGES_QUERY PSTAGES_ATTR "=query"

/* "helo,rcpt" (case-insensitive) or "none" -> *mask; -1 on anything else
 * (an empty list too). */
int pstages_parse(const char *s, unsigned *mask);
/* Append "mx_stages=LIST\n" to out. */
void pstages_reply(struct buf *out, unsigned mask);
/* Whether a request (NUL-separated "name=value" lines, len bytes) asks. */
int pstages_asked(const char *req, size_t len);
#endif
