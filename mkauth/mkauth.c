/* mkauth: add, change or remove an SMTP AUTH user in CONFDIR/auth and
 * rebuild auth.cdb. See doc/mkauth.8.
 *
 *   mkauth [-c CONFDIR] [-6] [-s] USER     set USER's password
 *   mkauth [-c CONFDIR] -d USER            remove USER
 *
 * The password is read from the terminal without echo, twice
 * (readpassphrase(3)), or with -s as one line of standard input, and
 * stored as a crypt(3) hash: yescrypt by default, SHA-512-crypt with
 * -6. CONFDIR/auth is rewritten atomically (temporary file, fsync,
 * rename; comments and other lines kept), then `mkcdb -c CONFDIR auth`
 * (from the directory of this program) compiles it. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <readpassphrase.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "buf.h"
#include "log.h"
#include "settings.h"
#include "tables.h"

#define USAGE "usage: mkauth [-c CONFDIR] [-6] [-s] USER\n       mkauth [-c CONFDIR] -d USER"
#define PASS_MAX 256

static void
read_password(int from_stdin, char *pw, size_t len)
{
	char again[PASS_MAX];
	size_t n;

	if (from_stdin) {
		if (!fgets(pw, (int)len, stdin))
			die(EXIT_PERM, "no password on standard input");
		n = strcspn(pw, "\r\n");
		if (pw[n] == 0 && n == len - 1)
			die(EXIT_PERM, "password too long (%d characters at most)", PASS_MAX - 2);
		pw[n] = 0;
	} else {
		if (!readpassphrase("Password: ", pw, len, RPP_REQUIRE_TTY))
			diesys(EXIT_PERM, "cannot read the password (no terminal? use -s)");
		if (!readpassphrase("Again: ", again, sizeof again, RPP_REQUIRE_TTY))
			diesys(EXIT_PERM, "cannot read the password");
		if (strcmp(pw, again)) {
			explicit_bzero(again, sizeof again);
			die(EXIT_PERM, "the passwords differ; nothing changed");
		}
		explicit_bzero(again, sizeof again);
	}
	if (!pw[0])
		die(EXIT_PERM, "empty password; nothing changed");
}

static void
make_hash(const char *pw, int sha512, char *out, size_t len)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *h;

	if (!crypt_gensalt_rn(sha512 ? "$6$" : "$y$", 0, NULL, 0, salt, sizeof salt))
		diesys(EXIT_TEMP, "crypt_gensalt");
	h = crypt_rn(pw, salt, cd, (int)sizeof *cd);
	if (!h || h[0] == '*' || strlcpy(out, h, len) >= len)
		diesys(EXIT_TEMP, "crypt");
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	if (auth_hash_check(out))
		die(EXIT_TEMP, "crypt(3) made a hash mkcdb would refuse: %s", auth_hash_check(out));
}

/* CONFDIR/auth without USER's line, plus "USER HASH" if hash. */
static void
rewrite(const char *confdir, const char *user, const char *hash)
{
	char path[4200], tmp[4300], *line = NULL;
	size_t cap = 0, ul = strlen(user);
	struct buf out = BUF_INIT;
	struct stat st;
	mode_t mode = 0640;
	int fd, found = 0;
	FILE *f;

	snprintf(path, sizeof path, "%s/auth", confdir);
	snprintf(tmp, sizeof tmp, "%s/auth.mkauth.tmp", confdir);
	if ((f = fopen(path, "r"))) {
		if (fstat(fileno(f), &st) == 0)
			mode = (st.st_mode & 0660) | 0600;
		while (getline(&line, &cap, f) >= 0) {
			const char *p = line + strspn(line, " \t");
			if (!strncmp(p, user, ul) && (p[ul] == ' ' || p[ul] == '\t')) {
				found = 1;
				continue;
			}
			buf_adds(&out, line);
			if (out.len && out.s[out.len - 1] != '\n')
				buf_adds(&out, "\n");
		}
		if (ferror(f))
			diesys(EXIT_TEMP, "cannot read %s", path);
		fclose(f);
		free(line);
	} else if (errno != ENOENT)
		diesys(EXIT_TEMP, "cannot read %s", path);
	else
		buf_adds(&out, "# auth: SMTP AUTH users, \"USER HASH\" (crypt(3)); see mxconf(5).\n"
		    "# Keep this file private (it holds password hashes); edit it with mkauth.\n");
	if (!hash && !found)
		die(EXIT_PERM, "%s: no user %s", path, user);
	if (hash)
		buf_printf(&out, "%s %s\n", user, hash);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		diesys(EXIT_TEMP, "cannot create %s", tmp);
	if (fchmod(fd, mode) < 0 || (f && fchown(fd, (uid_t)-1, st.st_gid) < 0 && errno != EPERM) ||
	    write(fd, out.s ? out.s : "", out.len) != (ssize_t)out.len || fsync(fd) < 0 ||
	    close(fd) < 0) {
		unlink(tmp);
		diesys(EXIT_TEMP, "cannot write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		diesys(EXIT_TEMP, "cannot rename %s to %s", tmp, path);
	}
	buf_free(&out);
	printf("%s user %s in %s\n", hash ? (found ? "changed" : "added") : "removed", user, path);
}

/* BINDIR/mkcdb -c CONFDIR auth */
static int
run_mkcdb(const char *confdir)
{
	char self[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 16);
	pid_t pid;
	int st;

	if (n <= 0)
		strlcpy(self, "mkcdb", sizeof self);
	else {
		self[n] = 0;
		if ((slash = strrchr(self, '/')))
			strlcpy(slash + 1, "mkcdb", sizeof self - (size_t)(slash + 1 - self));
	}
	fflush(stdout);
	if ((pid = fork()) < 0)
		diesys(EXIT_TEMP, "fork");
	if (pid == 0) {
		execlp(self, "mkcdb", "-c", confdir, "auth", (char *)NULL);
		log_warnsys("cannot run %s", self);
		_exit(EXIT_TEMP);
	}
	if (waitpid(pid, &st, 0) < 0)
		diesys(EXIT_TEMP, "waitpid");
	return WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_TEMP;
}

int
main(int argc, char **argv)
{
	struct settings s;
	const char *confopt = NULL;
	char err[512], pw[PASS_MAX], hash[AUTH_HASH_MAX + 1];
	int ch, del = 0, sha512 = 0, from_stdin = 0;

	log_init("mkauth", NULL);
	while ((ch = getopt(argc, argv, "c:d6sh")) != -1) {
		switch (ch) {
		case 'c':
			confopt = optarg;
			break;
		case 'd':
			del = 1;
			break;
		case '6':
			sha512 = 1;
			break;
		case 's':
			from_stdin = 1;
			break;
		case 'h':
			puts(USAGE);
			return 0;
		default:
			die(EXIT_PERM, "%s", USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 1)
		die(EXIT_PERM, "%s", USAGE);
	if (!auth_user_ok(argv[0], strlen(argv[0])))
		die(EXIT_PERM, "bad user name %s (letters, digits and ._@+- only, %d at most)",
		    argv[0], AUTH_USER_MAX);
	if (settings_load(&s, settings_confdir(confopt), err, sizeof err) < 0)
		die(EXIT_TEMP, "%s", err);
	umask(077);
	if (del)
		rewrite(s.confdir, argv[0], NULL);
	else {
		read_password(from_stdin, pw, sizeof pw);
		make_hash(pw, sha512, hash, sizeof hash);
		explicit_bzero(pw, sizeof pw);
		rewrite(s.confdir, argv[0], hash);
	}
	return run_mkcdb(s.confdir);
}
