/* progspawn.c: see progspawn.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include "progspawn.h"

int
spawn_fds(pid_t *pid, char *const argv[], char *const envp[], const int *fds, int nfds,
    int newpgrp)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t def, none;
	int rc = 0, i, src[SPAWN_MAXFDS], tmp[SPAWN_MAXFDS];

	if (nfds > SPAWN_MAXFDS) {
		errno = EINVAL;
		return -1;
	}
	/* a source below nfds could be overwritten by an earlier dup2 of
	 * the list (fd 3 onto 4 after 6 onto 3): such sources are copied
	 * above nfds first */
	for (i = 0; i < nfds; i++) {
		src[i] = fds[i];
		tmp[i] = -1;
		if (fds[i] >= 0 && fds[i] < nfds && fds[i] != i) {
			if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, nfds)) < 0) {
				rc = errno;
				break;
			}
			src[i] = tmp[i];
		}
	}

	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGCHLD);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGALRM);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	for (i = 0; i < nfds && rc == 0; i++)
		if (fds[i] == SPAWN_NULL)
			rc = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
		else if (fds[i] >= 0)
			rc = posix_spawn_file_actions_adddup2(&fa, src[i], i);
	if (rc == 0 &&
	    (rc = posix_spawn_file_actions_addclosefrom_np(&fa, nfds)) == 0 &&
	    (rc = posix_spawnattr_setflags(&at, (newpgrp ? POSIX_SPAWN_SETPGROUP : 0) |
	    POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)) == 0 &&
	    (rc = posix_spawnattr_setpgroup(&at, 0)) == 0 &&
	    (rc = posix_spawnattr_setsigdefault(&at, &def)) == 0 &&
	    (rc = posix_spawnattr_setsigmask(&at, &none)) == 0)
		rc = posix_spawnp(pid, argv[0], &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	for (i = 0; i < nfds; i++)
		if (tmp[i] >= 0)
			close(tmp[i]);
	if (rc) {
		errno = rc;
		return -1;
	}
	return 0;
}
