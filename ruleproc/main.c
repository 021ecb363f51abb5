/*
 * ruleproc: SMTP Rules (rules(5)) over envelope, client, headers, size
 * and body; one rules file, run four ways (see ruleproc(8)):
 *   ruleproc [-v] [-c CONFDIR] [-R RULES] PROG [ARGS...]    chain filter
 *   ruleproc -p [-v] [-c CONFDIR] [-R RULES]                policy service
 *   ruleproc -m SOCKET [-v] [-c CONFDIR] [-R RULES]         milter
 *   ruleproc -n [options] < MESSAGE                         dry run
 *   ruleproc -t [-v] [-c CONFDIR] [-R RULES]                check the rules
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "forkserver.h"
#include "log.h"
#include "ruleproc.h"

static void
usage_to(FILE *f)
{
	fprintf(f,
	    "usage: ruleproc [-v] [-c CONFDIR] [-R RULES] PROG [ARGS...]   chain filter\n"
	    "       ruleproc -p [-v] [-c CONFDIR] [-R RULES]               policy service (stdin/stdout)\n"
	    "       ruleproc -m SOCKET [-v] [-c CONFDIR] [-R RULES]        milter (unix:/path, inet:PORT@HOST)\n"
	    "       ruleproc -n [-c CONFDIR] [-R RULES] [-f SENDER] [-r RCPT]... [-i IP] [-N NAME]\n"
	    "                [-H HELO] [-a USER] [-w WHEN] [-q] < MESSAGE   dry run: explain every rule\n"
	    "       ruleproc -t [-v] [-c CONFDIR] [-R RULES]               check the rules, install rules.ok\n"
	    "  -R RULES  use this rules file instead of CONFDIR/rules (no rules.ok fallback)\n"
	    "  -w WHEN   pretend the local time is WHEN (\"sat 23:30\", \"07:15\") for time/day rules\n"
	    "  -q        dry run: print only the decision\n"
	    "  -v        log every decision and rule match\n");
}

static void
usage(void)
{
	usage_to(stderr);
	exit(EXIT_PERM);
}

char *
rp_bare(const char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		n--;
	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s++;
		n -= 2;
	}
	return xstrndup(s, n);
}

char **
rp_split_rcpts(const char *s, int *n)
{
	char **v = NULL;
	int cnt = 0;

	while (s && *s) {
		size_t l = strcspn(s, "\n");
		char *line = xstrndup(s, l), *b = rp_bare(line);
		free(line);
		if (*b) {
			v = xreallocarray(v, (size_t)cnt + 1, sizeof *v);
			v[cnt++] = b;
		} else
			free(b);
		s += l;
		if (*s)
			s++;
	}
	*n = cnt;
	return v;
}

int
main(int argc, char **argv)
{
	static struct opts o;	/* reachable until exit (what it points to is never freed) */
	const char *milter = NULL, *confopt = NULL;
	int c, policy = 0, dry = 0, check = 0;

	memset(&o, 0, sizeof o);
	log_init("ruleproc", getenv("MXID"));
	log_verbose = 1;
	while ((c = getopt(argc, argv, "+c:R:w:vpm:ntf:r:i:N:H:a:qh")) != -1) {
		switch (c) {
		case 'c': confopt = optarg; break;
		case 'R': o.rulesfile = optarg; break;
		case 'w': o.when = optarg; break;
		case 'v': o.verbose++; log_verbose = 2; break;
		case 'p': policy = 1; break;
		case 'm': milter = optarg; break;
		case 'n': dry = 1; break;
		case 't': check = 1; break;
		case 'f': o.sender = optarg; break;
		case 'r':
			o.rcpts = xreallocarray(o.rcpts, (size_t)o.nrcpt + 1, sizeof *o.rcpts);
			o.rcpts[o.nrcpt++] = rp_bare(optarg);
			break;
		case 'i': o.ip = optarg; break;
		case 'N': o.name = optarg; break;
		case 'H': o.helo = optarg; break;
		case 'a': o.auth = optarg; break;
		case 'q': o.quiet = 1; break;
		case 'h': usage_to(stdout); return 0;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	o.confdir = settings_confdir(confopt);
	if (policy + dry + check + (milter != NULL) > 1)
		usage();
	if (o.when) {
		int wd, mi;
		if (rules_when(o.when, &wd, &mi) < 0) {
			fprintf(stderr, "ruleproc: -w: expected \"DAY HH:MM\" or \"HH:MM\"\n");
			usage();
		}
	}
	if ((o.sender || o.nrcpt || o.ip || o.name || o.helo || o.auth || o.quiet) && !dry)
		usage();
	if (check)
		return argc ? (usage(), 0) : rp_check(&o);
	if (dry)
		return argc ? (usage(), 0) : dry_run(&o);
	if (policy && forkserver_fd() >= 0)
		o.eager = 1;
	if (policy)
		return argc ? (usage(), 0) : policy_mode(&o);
	if (milter) {
		o.eager = 1;	/* long-lived: start-up cost does not matter */
		return argc ? (usage(), 0) : milter_mode(&o, milter);
	}
	if (argc < 1)
		usage();
	if (forkserver_fd() >= 0)
		o.eager = 1;	/* a fork server: compiled once for every child */
	return chain_mode(&o, argv);
}
