/* progspawn: start a program with posix_spawn (a vfork and exec in glibc: no
 * copy of our page tables), with descriptors 0..nfds-1 as given and every
 * other one closed, default signal handling and an empty signal mask. */
#ifndef MX_PROGSPAWN_H
#define MX_PROGSPAWN_H
#include <sys/types.h>

#define SPAWN_KEEP (-1)	/* fds[i]: leave descriptor i as it is */
#define SPAWN_NULL (-2)	/* fds[i]: /dev/null */
#define SPAWN_MAXFDS 32	/* nfds at most */

/* fds[i] >= 0 is dup'ed onto i (any order of sources is safe); newpgrp: its own
 * process group. 0 with *pid, or -1 with errno. */
int spawn_fds(pid_t *pid, char *const argv[], char *const envp[], const int *fds, int nfds,
    int newpgrp);
#endif
