/* smtpd.h: private interfaces of smtpd-lite (see doc/smtpd-lite.8).
 *
 * One process serves one SMTP connection on fd 0/1 (session.c). The
 * parts: io.c (client I/O with timeouts, output held back while more
 * pipelined input is waiting), data.c (DATA text -> spool file),
 * policy.c (Postfix policy delegation clients), chain.c (the delivery
 * chain), listen.c (the own -l listener), util.c (ids, dates, argv),
 * tls.c (STARTTLS and implicit TLS, OpenSSL), auth.c (SMTP AUTH:
 * base64, password checks against auth.cdb), milter.c (the milter
 * client: smtpd_milters-style content filters). */
#ifndef SMTPD_H
#define SMTPD_H
#include <stddef.h>
#include <sys/types.h>

#include "addr.h"
#include "buf.h"
#include "settings.h"

#define SMTP_LINE_MAX 512	/* RFC 5321 4.5.3.1.4, CRLF included */
#define SMTP_REPLY_MAX 512	/* text we put in one reply line */
#define ID_LEN 32

/* ---- io.c: the client connection ---- */
enum { IO_OK = 1, IO_EOF = 0, IO_TIMEOUT = -1, IO_ERR = -2 };
void io_init(int rfd, int wfd);
void io_timeout(long long secs);	/* for the next reads */
/* Read one command line (without CR LF) into line (SMTP_LINE_MAX bytes).
 * *toolong is set when the line had to be cut (the rest is skipped up
 * to the next LF). Returns IO_OK, IO_EOF, IO_TIMEOUT or IO_ERR. */
int io_getline(char *line, size_t *len, int *toolong);
/* Buffered bytes for the DATA reader: fills the buffer (flushing our
 * output first) when it is empty. p and n point at what is buffered. */
int io_fill(const char **p, size_t *n);
void io_consume(size_t n);
void io_put(const char *s, size_t n);
int io_flush(void);		/* 0 ok, -1 the client is gone */
void io_fds(int *rfd, int *wfd);
struct ssl_st;
void io_set_tls(struct ssl_st *ssl);	/* from now on, I/O through TLS */
int io_tls_active(void);
void io_tls_end(void);		/* send close_notify, free the session */
/* Throw away buffered input; returns how many bytes there were. */
size_t io_discard_input(void);

/* ---- tls.c ---- */
struct tls_info {
	char protocol[32];	/* "TLSv1.3" */
	char cipher[128];	/* "TLS_AES_256_GCM_SHA384" */
	int bits, alg_bits;
};
int tls_configured(const struct settings *s);	/* tls_cert is set */
void tls_preinit(void);		/* listener: initialise OpenSSL before forking */
/* Read the certificate and key (per connection: renewals need no
 * restart). 0 ready, -1 trouble (logged). */
int tls_prepare(const struct settings *s);
/* Handshake on io.c's descriptors after tls_prepare(); on success io.c
 * reads and writes through TLS. 0 ok, -1 failed (logged with ip). */
int tls_handshake(long long timeout, const char *ip, struct tls_info *ti);

/* ---- auth.c ---- */
/* Password check against CONFDIR/auth.cdb, about the same work whether
 * or not the user exists: 1 good, 0 bad, -1 temporary trouble. */
int auth_check(const struct settings *s, const char *user, const char *pass);
int auth_available(const struct settings *s);	/* CONFDIR/auth.cdb exists */
/* May user send as sender (CONFDIR/senders.cdb)? 1/0, -1 trouble. */
int auth_sender_ok(const struct settings *s, const char *sender, const char *user);

/* ---- util.c ---- */
void make_id(char *dst, size_t len);	/* Maildir-safe, unique */
void rfc5322_date(char *dst, size_t len);
/* Split s at blanks into a NULL-terminated argv (malloc'ed copy). */
char **split_words(const char *s);
void free_words(char **av);
/* Printable-ASCII copy of s (others dropped), at most len-1 bytes. */
void sanitize(char *dst, size_t len, const char *s);
int set_nonblock(int fd);
/* Wait until fd is ready (POLLIN/POLLOUT) until deadline_ms
 * (monotonic); 1 ready, 0 timeout, -1 error. */
int wait_fd(int fd, short ev, long long deadline_ms);
long long now_ms(void);
void child_defaults(void);	/* signal dispositions for exec'd children */

/* ---- netconn.c ---- */
/* Connect to "unix:PATH" or "inet:HOST:PORT" ([IPv6] allowed) by the
 * deadline (now_ms() scale); a non-blocking fd, or -1 with errno. */
int net_connect(const char *spec, long long deadline_ms);
int net_connect_unix(const char *path, long long deadline_ms);
int net_connect_inet(const char *hostport, long long deadline_ms);

/* ---- policy.c ---- */
enum pstage { PS_CONNECT, PS_HELO, PS_EHLO, PS_MAIL, PS_RCPT };
struct preq {			/* what the services are told */
	enum pstage stage;
	const char *helo, *sender, *recipient, *instance;
	long long size;
	int esmtp;
};
struct pres {
	int code;		/* 0 = accepted (OK/DUNNO), else the reply code */
	char reply[SMTP_REPLY_MAX];	/* "554 5.7.1 text" when code != 0 */
	char service[64];	/* who decided (or failed) */
	int disconnect;		/* 421/521: reply then close */
	int discard;		/* DISCARD: take the message, drop it */
	char redirect[ADDR_PATH_MAX + 1];	/* REDIRECT addr, "" none */
	struct buf prepend;	/* PREPEND headers, "Name: value\n" each */
};
void policy_init(const struct settings *s, const char *bindir,
    const char *ip, const char *name, const char *localip, const char *localport,
    const char *remoteport);
void policy_check(const struct preq *q, struct pres *r);
/* Attributes of later requests: encryption_protocol, encryption_cipher,
 * encryption_keysize; sasl_method, sasl_username ("" = none). */
void policy_set_tls(const char *protocol, const char *cipher, int bits);
void policy_set_sasl(const char *method, const char *user);
void pres_free(struct pres *r);
void policy_close(void);

/* ---- chain.c ---- */
struct chain_env {
	const char *sender, *helo, *ip, *host, *id;
	const struct buf *rcpts;	/* "a\nb\n" */
};
/* Run argv with the spool fd as stdin. Fills reply ("250 ..."/"554
 * ..."/"451 ...") and returns the reply code. */
int chain_run(char **argv, int spoolfd, const struct chain_env *e,
    long long timeout, char *reply, size_t rlen);

/* ---- milter.c: the milter client (doc/smtpd-lite.8 MILTERS) ---- */
struct client;
struct mres {
	int code;		/* 0 go on, else the reply code of reply */
	char reply[SMTP_REPLY_MAX];
	int discard;		/* take the message, deliver nothing */
};
int milter_configured(void);
/* Connects the milters of the settings, negotiates, sends connect. A
 * refusal there (or a failed milter under tempfail/reject) refuses
 * every later transaction. */
void milter_connect(const struct settings *s, const struct client *c, const char *sid,
    struct mres *r);
void milter_helo(const char *helo, const char *tlsver, const char *cipher, int bits,
    struct mres *r);
void milter_mail(const char *sender, const char *args, const char *authtype,
    const char *authuser, struct mres *r);
void milter_rcpt(const char *rcpt, struct mres *r);
void milter_data(const char *id, struct mres *r);
/* The spooled message through every milter; their modifications are
 * applied to fd (it may become a new file) and rcpts. Returns the
 * reply code (0 = go on; r->discard = take and drop). */
int milter_message(int fd, const char *id, struct buf *rcpts, struct mres *r);
void milter_folders(const struct buf *rcpts, int set);	/* quarantine -> FOLDERS */
void milter_abort(void);	/* RSET, failed transaction */
void milter_quit(void);

/* ---- data.c ---- */
struct data_result {
	long long size;		/* bytes of message text (LF ends) */
	int eof;		/* the client went away: nothing done */
	int timeout;
	int toobig, bare, nul, hops, ioerr;
};
/* Read DATA text up to CRLF.CRLF into fd (after the already written
 * header lines). */
/* fd: the spool (lib/spool.h); a memory spool is moved to a file in
 * the spooldir once it grows past spool_memory */
void data_read(int fd, const struct settings *s, struct data_result *r);

/* ---- session.c ---- */
struct client {
	char ip[64], port[16], host[256];	/* host: "" unknown */
	char localip[64], localport[16];
};
void session_run(const struct settings *s, const struct client *c, char **chain);

/* ---- listen.c ---- */
/* tls[i]: implicit TLS on addrs[i] (-L) */
/* In the session server: its workers accept on the listener's sockets
 * (fds 4.., SMTPD_LISTEN_TLS), with the listener's limits */
void listen_accepting(const struct settings *s);
void listen_run(const struct settings *s, char **addrs, const int *tls, int naddrs,
    char **chain);

/* ---- main.c ---- */
extern int opt_implicit_tls;	/* -T, or a -L listener: TLS from the first byte */
extern int opt_submission;	/* -m: AUTH required before MAIL (RFC 6409) */
const char *smtpd_bindir(const struct settings *s);
int smtpd_have_rules(const struct settings *s);	/* CONFDIR/rules exists */

/* BINDIR/PROG -p -c CONFDIR (policy.c): a built-in policy service */
char **policy_prog_argv(const char *bindir, const char *prog, const char *confdir);

/* servers.c: the sessions' fork servers (lib/forkserver.h) */
void servers_start(const struct settings *s, char **chain);
void servers_tick(void);			/* start again the ones that died */
void servers_check(void);			/* the same, without their exit status */
int servers_reaped(pid_t pid, int status);	/* 1: it was one of them */
int servers_policy_ctl(const char *prog);	/* "relaycheck"/"ruleproc": -1 none */
int servers_chain_ctl(void);			/* -1 none: exec the chain */
void drop_privileges(const struct settings *s);
void serve_one(const struct settings *s, char **chain) __attribute__((noreturn));
#endif
