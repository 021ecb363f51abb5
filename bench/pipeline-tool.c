/* pipeline-tool: helpers for bench/pipeline.sh (built there with cc;
 * not part of the main build).
 *
 *   pipeline-tool fsync DIR NFILES SIZE WRITERS
 *	the physical limit of durable Maildir-style delivery on one
 *	filesystem: WRITERS processes share NFILES; each file is
 *	open(O_CREAT|O_EXCL) in DIR/tmp, write SIZE bytes, fsync, close,
 *	rename into DIR/new, fsync(DIR/new): the least a Maildir delivery
 *	must do before a server may say 250. Prints "FILES SECONDS FILES/S".
 *
 *   pipeline-tool drive EXPECT TIMEOUT MAILDIR... -- COMMAND...
 *	runs COMMAND (the SMTP client), then polls the new/ directories
 *	every 2 ms until they hold EXPECT files together (or TIMEOUT
 *	seconds have passed), then looks again 0.3 s later for extra files.
 *	Prints "FILES SECONDS CLIENT_STATUS": seconds from just before
 *	COMMAND starts until EXPECT files were there (or the timeout). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static double
now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void
die(const char *what)
{
	fprintf(stderr, "pipeline-tool: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long
count_new(char **dirs, int n)
{
	char p[4200];
	long c = 0;
	int i;

	for (i = 0; i < n; i++) {
		struct dirent *d;
		DIR *dp;
		snprintf(p, sizeof p, "%s/new", dirs[i]);
		if (!(dp = opendir(p)))
			continue;
		while ((d = readdir(dp)))
			if (d->d_name[0] != '.')
				c++;
		closedir(dp);
	}
	return c;
}

static int
drive(int argc, char **argv)
{
	long expect, got;
	double timeout, t0, t1;
	int i, ndirs, st;
	pid_t pid;

	if (argc < 6)
		return 2;
	expect = atol(argv[2]);
	timeout = atof(argv[3]);
	for (i = 4; i < argc && strcmp(argv[i], "--"); i++)
		;
	if (i >= argc - 1)
		return 2;
	ndirs = i - 4;
	t0 = now();
	if ((pid = fork()) < 0)
		die("fork");
	if (pid == 0) {
		execvp(argv[i + 1], argv + i + 1);
		die(argv[i + 1]);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	for (;;) {
		got = count_new(argv + 4, ndirs);
		t1 = now();
		if (got >= expect || t1 - t0 > timeout)
			break;
		usleep(2000);
	}
	usleep(300000);
	got = count_new(argv + 4, ndirs);
	printf("%ld %.3f %d\n", got, t1 - t0,
	    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return 0;
}

static void
writer(const char *dir, int id, long n, size_t size)
{
	char tmp[4200], new_[4200], *buf;
	int dfd, fd;
	long i;

	snprintf(tmp, sizeof tmp, "%s/new", dir);
	if ((dfd = open(tmp, O_RDONLY | O_DIRECTORY)) < 0)
		die(tmp);
	if (!(buf = malloc(size ? size : 1)))
		die("malloc");
	memset(buf, 'x', size);
	for (i = 0; i < n; i++) {
		size_t off = 0;
		snprintf(tmp, sizeof tmp, "%s/tmp/%d.%ld", dir, id, i);
		snprintf(new_, sizeof new_, "%s/new/%d.%ld", dir, id, i);
		if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0)
			die(tmp);
		while (off < size) {
			ssize_t w = write(fd, buf + off, size - off);
			if (w <= 0)
				die("write");
			off += (size_t)w;
		}
		if (fsync(fd) < 0 || close(fd) < 0)
			die("fsync");
		if (rename(tmp, new_) < 0)
			die("rename");
		if (fsync(dfd) < 0)
			die("fsync dir");
	}
	exit(0);
}

int
main(int argc, char **argv)
{
	long nfiles, per, rest;
	size_t size;
	int w, i, st, bad = 0;
	double t0, t1;
	char p[4200];

	if (argc > 1 && !strcmp(argv[1], "drive"))
		return drive(argc, argv);
	if (argc != 6 || strcmp(argv[1], "fsync")) {
		fprintf(stderr, "usage: pipeline-tool fsync DIR NFILES SIZE WRITERS\n"
		    "       pipeline-tool drive EXPECT TIMEOUT MAILDIR... -- COMMAND...\n");
		return 2;
	}
	argv++;
	nfiles = atol(argv[2]);
	size = (size_t)atol(argv[3]);
	w = atoi(argv[4]);
	if (nfiles < 1 || w < 1)
		return 2;
	snprintf(p, sizeof p, "%s/tmp", argv[1]);
	(void)mkdir(argv[1], 0700);
	(void)mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/new", argv[1]);
	(void)mkdir(p, 0700);
	per = nfiles / w;
	rest = nfiles % w;
	t0 = now();
	for (i = 0; i < w; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			writer(argv[1], i, per + (i < rest), size);
	}
	while (wait(&st) > 0)
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	t1 = now();
	if (bad)
		return 1;
	printf("%ld %.3f %.1f\n", nfiles, t1 - t0, (double)nfiles / (t1 - t0));
	return 0;
}
