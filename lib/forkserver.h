/* forkserver: run one of our programs as a long-lived server that forks,
 * without exec, a child per request. On the bench VM an exec costs about
 * 1 ms of CPU and a fork 0.2 ms (doc/PERFORMANCE.md, issue 7); the child
 * also inherits what its parent loaded (settings, tables, compiled rules).
 *
 * The starter (smtpd-lite's listener; ruleproc for the program after
 * it) spawns the program with one end of a SOCK_SEQPACKET socketpair as
 * fd 3 and FORKSERVER_FD=3 in its environment. A program that supports
 * it calls forkserver_serve() once it has loaded what children share;
 * the server then sends "ready". A program that does not is taken as
 * "cannot serve" and the starter keeps exec'ing it per request.
 *
 * A request is one record on the control socket: a kind byte and, by
 * SCM_RIGHTS, the client's end of a new stream socketpair (the
 * conversation) and for FS_CHAIN the message. The client then writes the
 * request's environment on the conversation: "NAME=VALUE\0"... "\0".
 * Only the envelope names (forkserver.c) are taken, the rest of the
 * child's environment is the server's. The child returns from
 * forkserver_serve() with
 *   FS_POLICY: fd 0 and 1 the conversation (a policy co-process);
 *   FS_CHAIN:  fd 0 the message, fd 2 the conversation (a chain program,
 *              whose last stderr line is its reason).
 * For FS_CHAIN the server writes "\n" FS_STATUS "N\n" on the conversation
 * once the child has ended (N its exit code; 111 if it was killed or ran
 * over the time limit), then closes its end: EOF without that line means
 * a temporary failure, so nothing is ever taken as delivered unless the
 * program itself said so. The server ends when every client end of the
 * control socket is closed, after its children. */
#ifndef MX_FORKSERVER_H
#define MX_FORKSERVER_H
#include <sys/types.h>

#define FORKSERVER_ENV "FORKSERVER_FD"
#define FS_STATUS "\001exit "

enum fs_kind { FS_POLICY = 'p', FS_CHAIN = 'c' };

/* Our control socket when started as a server, else -1. */
int forkserver_fd(void);

/* Server: answers "ready", then loops; returns only in a child (0).
 * refresh (may be NULL) runs before each fork: reload what changed.
 * Children of FS_CHAIN are killed after timeout_s seconds. */
int forkserver_serve(enum fs_kind kind, long long timeout_s, void (*refresh)(void *), void *arg);

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

/* Client: open one request; returns the conversation, or -1 (errno).
 * passfd: the message (FS_CHAIN) or -1; envp: NAME=VALUE strings,
 * NULL-terminated (names outside the envelope set are not sent);
 * deadline in ms of CLOCK_MONOTONIC (fs_now_ms()). */
int forkserver_request(int ctl, enum fs_kind kind, int passfd, char *const envp[],
    long long deadline_ms);

/* "\001exit N" (a line without its '\n') -> N, else -1. */
int forkserver_status(const char *line, size_t len);

/* Client: read the conversation of an FS_CHAIN request to its end,
 * giving each line but the status to line() (without '\n'; lines over
 * 1000 bytes are cut). Returns the exit code, or -1: EOF without a
 * status, an error, or the deadline (errno ETIMEDOUT). */
int forkserver_collect(int conv, void (*line)(void *, const char *, size_t), void *arg,
    long long deadline_ms);

long long fs_now_ms(void);
#endif
