/* log: one line per event on stderr, "prog[id]: level: text".
 * Client-supplied bytes go through log_esc() first. */
#ifndef MX_LOG_H
#define MX_LOG_H
#include <stddef.h>

#define EXIT_PERM 100	/* qmail convention: permanent failure, usage */
#define EXIT_TEMP 111	/* temporary failure, system error */

void log_init(const char *prog, const char *id);	/* id may be NULL */
/* on: info and debug lines stay in stderr's buffer (a fork server's
 * chain worker sends a request's lines with its status); warnings
 * still flush everything at once. */
void log_hold(int on);
const char *log_prog(void);
extern int log_verbose;				/* 0 quiet .. 3 debug */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn with ": strerror(errno)" appended */
void log_warnsys(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void diesys(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Escape untrusted bytes (vis(3) style, C escapes for control chars,
 * \ooo for bytes >= 0x7f) into dst; always NUL-terminates, truncates
 * with "..." if dst is too small. Returns dst. */
char *log_esc(char *dst, size_t dstlen, const char *src, size_t srclen);
#endif
