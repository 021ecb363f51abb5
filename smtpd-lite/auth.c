/* auth.c: the checks behind SMTP AUTH (RFC 4954; the dialogue is in
 * session.c).
 *
 * Passwords are checked against CONFDIR/auth.cdb (user -> crypt(3)
 * hash, made by mkcdb from CONFDIR/auth, see mxconf(5) and mkauth(8))
 * with libcrypt's crypt_rn(). An unknown user costs the same hashing
 * as a known one (a fixed yescrypt hash stands in), and the result is
 * compared in constant time, so that timing tells little about which
 * users exist. The table is opened for each check: a rebuild applies
 * to the next attempt.
 *
 * Instead of the table, a site may name a qmail checkpassword program
 * (setting auth_checkpassword): it gets "user\0password\0timestamp\0"
 * on descriptor 3 and runs /bin/true on success (exit 0); exit 1 means
 * a bad password, anything else (or no answer within timeout_policy)
 * a temporary failure. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <openssl/crypto.h>

#include "base64.h"
#include "log.h"
#include "smtpd.h"
#include "table.h"
#include "tables.h"

/* crypt("no such user, no such password", yescrypt, mkauth's cost) */
static const char dummy_hash[] =
    "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$MMeVP9PFcKG0M6AFpry9C5Ou19RmvbJ.Xouay3k7AQ7";


extern char **environ;

/* The checkpassword interface; 1 good, 0 bad, -1 trouble. */
static int
checkpassword(const struct settings *s, const char *user, const char *pass)
{
	posix_spawn_file_actions_t fa;
	char **av = split_words(s->auth_checkpassword), **argv;
	char stamp[64];
	struct buf in = BUF_INIT;
	long long deadline;
	int pfd[2], rc, st, n;
	pid_t pid = -1, w;

	for (n = 0; av[n]; n++)
		;
	if (n == 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		free_words(av);
		return -1;
	}
	argv = xcalloc((size_t)n + 2, sizeof *argv);
	memcpy(argv, av, (size_t)n * sizeof *argv);
	argv[n] = "/bin/true";	/* what checkpassword runs on success */
	posix_spawn_file_actions_init(&fa);
	if ((rc = posix_spawn_file_actions_adddup2(&fa, pfd[0], 3)) == 0 &&
	    (rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) == 0 &&
	    (rc = posix_spawn_file_actions_adddup2(&fa, 2, 1)) == 0 &&
	    (rc = posix_spawn_file_actions_addclosefrom_np(&fa, 4)) == 0)
		rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[0]);
	if (rc) {
		errno = rc;
		log_warnsys("auth_checkpassword: cannot run %s", argv[0]);
		close(pfd[1]);
		free(argv);
		free_words(av);
		return -1;
	}
	/* user, password, timestamp: far below PIPE_BUF, one write */
	snprintf(stamp, sizeof stamp, "%lld", (long long)time(NULL));
	buf_add(&in, user, strlen(user) + 1);
	buf_add(&in, pass, strlen(pass) + 1);
	buf_add(&in, stamp, strlen(stamp) + 1);
	if (write(pfd[1], in.s, in.len) != (ssize_t)in.len)
		log_warnsys("auth_checkpassword: write");
	explicit_bzero(in.s, in.len);
	buf_free(&in);
	close(pfd[1]);
	deadline = now_ms() + s->timeout_policy * 1000;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(2000);
	if (w == 0) {
		log_warn("auth_checkpassword: %s gave no answer in %llds, killed", argv[0],
		    s->timeout_policy);
		kill(pid, SIGKILL);
		(void)waitpid(pid, &st, 0);
		rc = -1;
	} else if (w < 0 || !WIFEXITED(st))
		rc = -1;
	else if (WEXITSTATUS(st) == 0)
		rc = 1;
	else if (WEXITSTATUS(st) == 1)
		rc = 0;
	else {
		log_warn("auth_checkpassword: %s exited %d (temporary failure)", argv[0],
		    WEXITSTATUS(st));
		rc = -1;
	}
	free(argv);
	free_words(av);
	return rc;
}

int
auth_available(const struct settings *s)
{
	char path[4200];

	if (s->auth_checkpassword[0])
		return 1;
	snprintf(path, sizeof path, "%s/auth.cdb", s->confdir);
	return access(path, F_OK) == 0;
}

int
auth_check(const struct settings *s, const char *user, const char *pass)
{
	static struct table t = { .fd = -1 };
	char hash[AUTH_HASH_MAX + 1];
	const char *h = dummy_hash, *out;
	struct crypt_data *cd;
	int found = 0, good = 0;

	if (s->auth_checkpassword[0])
		return auth_user_ok(user, strlen(user)) ? checkpassword(s, user, pass) : 0;
	if (auth_user_ok(user, strlen(user))) {
		if (table_open(&t, s->confdir, "auth") < 0) {
			log_warnsys("cannot open %s/auth.cdb", s->confdir);
			return -1;
		}
		found = auth_get(&t, user, hash, sizeof hash);
		table_close(&t);
		if (found < 0) {
			log_warnsys("cannot read %s/auth.cdb", s->confdir);
			return -1;
		}
		if (found)
			h = hash;
	}
	cd = xcalloc(1, sizeof *cd);
	out = crypt_rn(pass, h, cd, (int)sizeof *cd);
	/* crypt_rn() fails on a hash it cannot use ("*0" style or NULL):
	 * never a match */
	if (out && out[0] != '*' && strlen(out) == strlen(h))
		good = CRYPTO_memcmp(out, h, strlen(h)) == 0;
	else if (found)
		log_warn("auth.cdb: the hash of user %s cannot be used by crypt(3)", user);
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	explicit_bzero(hash, sizeof hash);
	return found && good;
}

int
auth_sender_ok(const struct settings *s, const char *sender, const char *user)
{
	struct table t = { .fd = -1 };
	int r;

	if (table_open(&t, s->confdir, "senders") < 0) {
		log_warnsys("auth_sender_check: cannot open %s/senders.cdb", s->confdir);
		return -1;
	}
	r = sender_owned(&t, sender, user);
	table_close(&t);
	if (r < 0)
		log_warnsys("cannot read %s/senders.cdb", s->confdir);
	return r;
}
