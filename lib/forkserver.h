/* forkserver: run our programs as long-lived servers instead of an exec
 * per session or message. On the bench VM an exec costs about 1 ms of
 * CPU and a fork 0.2 ms (doc/PERFORMANCE.md, issue 7); a server loads
 * its settings, tables and compiled rules once.
 *
 * The starter (smtpd-lite's listener; ruleproc for the program after
 * it) spawns the program with one end of a SOCK_SEQPACKET socketpair as
 * fd 3 and FORKSERVER_FD=3 in its environment. A program that supports
 * it calls forkserver_serve_workers() or forkserver_serve_policy() once it
 * has loaded what it shares; the server then sends "ready". A program
 * that does not is taken as "cannot serve" and the starter keeps
 * exec'ing it.
 *
 * A request is one record on the control socket: a kind byte, the
 * length of its environment and, by SCM_RIGHTS, the client's end of a
 * new stream socketpair (the conversation) and for FS_CHAIN the message.
 * The client then writes the request's environment on the conversation,
 * "NAME=VALUE\0" each; only the envelope names (forkserver.c) are taken,
 * the rest of the environment is the server's.
 *   FS_POLICY: the conversation carries Postfix policy requests and
 *              answers, all sessions served by one process;
 *   FS_CHAIN:  a worker runs the program on it with fd 0 the message and
 *              fd 2 the conversation (whose last line is its reason).
 * For FS_CHAIN the conversation ends with "\n" FS_STATUS "N NONCE\n": N
 * the exit code, NONCE (16 hex digits) the request's, which the client
 * drew and no program's output can guess. The worker writes it when the
 * program is done, after the program's held lines (one write, so the
 * client wakes once), also when the program calls exit() (its code) or
 * runs another program (forkserver_exec: that one's code). A worker
 * that dies (a signal, _exit) or runs over the time limit (killed)
 * closes the conversation without it: EOF without that line means a
 * temporary failure, so nothing is ever taken as delivered unless the
 * program itself said so. The workers take the requests from the
 * control socket themselves; the server only keeps the pool
 * (forkserver.c). A server ends when every client end of its control
 * socket is closed, after the requests in progress. */
#ifndef MX_FORKSERVER_H
#define MX_FORKSERVER_H
#include <stdint.h>
#include <sys/types.h>

#define FORKSERVER_ENV "FORKSERVER_FD"
#define FS_STATUS "\001exit "

enum fs_kind { FS_POLICY = 'p', FS_CHAIN = 'c', FS_SESSION = 's' };
#define FS_MAX_USE 100	/* requests a chain worker serves (as Postfix's max_use) */

/* Our control socket when started as a server, else -1. */
int forkserver_fd(void);

/* Server for a chain program (FS_CHAIN) or SMTP sessions (FS_SESSION):
 * answers "ready", then keeps a pool of worker processes forked from
 * this one that take the requests (so they inherit what it loaded), each running
 * one() for up to max_use requests. one() sees the request's
 * environment and, for FS_CHAIN, fd 0 the message and fd 2 the
 * conversation; for FS_SESSION fd 0 and 1 the client's socket (fd 2
 * stays the server's log). It returns the exit code, or the program
 * calls forkserver_exit(code) from anywhere inside it (a longjmp back:
 * what that request allocated stays until the worker ends, at most
 * max_use requests later). A worker that calls exit() during a request:
 * its code; one that dies of a signal: no status (temporary). refresh
 * (may be NULL) runs in the server before it forks workers and at least
 * once a second; workers over timeout_s seconds are killed (0: no
 * limit). Never returns. */
void forkserver_serve_workers(enum fs_kind kind, long long timeout_s, int max_use,
    void (*refresh)(void *), int (*one)(void *), void *arg) __attribute__((noreturn));

/* Sessions the workers accept themselves (smtpd-lite's listener hands
 * its listening sockets, non-blocking, to the session server; issue 7:
 * no process between the client and its session). Call before
 * forkserver_serve_workers(FS_SESSION, ...). An idle worker waits on
 * every socket (EPOLLIN | EPOLLEXCLUSIVE) and accepts; accepted() makes
 * a session of the connection fd from socket which: it sets the
 * environment (the envelope names are unset before), puts fd on 0 and
 * 1 and returns 0, or refuses it (writes, closes) and returns -1. At
 * most cap workers; while all of them are busy, the server accepts
 * and hands each connection to refuse(), which must close it. */
struct sockaddr_storage;
void forkserver_accept_on(const int *lfd, int n, int cap,
    int (*accepted)(int fd, int which, const struct sockaddr_storage *peer, void *arg),
    void (*refuse)(int fd, int which, const struct sockaddr_storage *peer, void *arg));

/* In a worker: mark its request with tag (smtpd-lite: a hash of the
 * client's address; 0 clears it) and count the other busy workers whose
 * request has the same, for a limit per client. */
int forkserver_tag(uint64_t tag);

/* End the current request with code (a worker), else exit(code). */
void forkserver_exit(int code) __attribute__((noreturn));

/* Run argv (PATH searched) for the rest of the request, with our fds 0,
 * 1 and 2: outside a worker an exec; in a worker a child, and the
 * request ends with its exit code (111 on a signal). Returns only when
 * it cannot be started (errno). */
void forkserver_exec(char *const argv[]);

/* Server for policy conversations, all in this one process (no fork:
 * a policy answer is a few table look-ups, a process per session cost
 * more than the answers). The environment sent with a request is
 * read and ignored: the process keeps its own (the listener's). For
 * each complete request (lines up to the empty line) answer() gets the
 * lines, each NUL-terminated, and appends the reply to out; returning
 * -1 closes that conversation unanswered (a malformed request:
 * Postfix's rule). refresh runs before each batch of answers. Returns
 * only when every client is gone. */
struct buf;
void forkserver_serve_policy(int (*answer)(void *arg, char *req, size_t len, struct buf *out),
    size_t reqmax, void (*refresh)(void *), void *arg);

/* Starter: spawn argv as a server (envp: its environment). Returns the
 * client end of its control socket and the pid, or -1 when it cannot
 * run, did not say "ready" within a few seconds, or is not one of ours
 * (argv[0] a path into the directory of the running program). */
int forkserver_start(char *const argv[], char *const envp[], pid_t *pid);
/* ... with extra[0..nextra-1] as its fds 4, 5, ... */
int forkserver_start_fds(char *const argv[], char *const envp[], pid_t *pid, const int *extra,
    int nextra);

/* Client: open one request; returns the conversation, or -1 (errno).
 * passfd: the message (FS_CHAIN) or -1; envp: NAME=VALUE strings,
 * NULL-terminated (names outside the envelope set are not sent);
 * deadline in ms of CLOCK_MONOTONIC (fs_now_ms()). */
int forkserver_request(int ctl, enum fs_kind kind, int passfd, char *const envp[],
    long long deadline_ms, uint64_t *nonce);

/* Client: read the conversation of an FS_CHAIN request (nonce: from
 * forkserver_request) up to its status line, giving each line before
 * it to line() (without '\n'; lines over 1000 bytes are cut). Returns
 * the exit code, or -1: EOF without the status, an error, or the
 * deadline (errno ETIMEDOUT). */
int forkserver_collect(int conv, uint64_t nonce, void (*line)(void *, const char *, size_t),
    void *arg, long long deadline_ms);

long long fs_now_ms(void);
#endif
