/* route.c: where mail for a domain goes.
 *
 * 1. The routes table (routes.cdb): the domain, then ".parent" entries
 *    for each parent domain, then "*" (a smarthost). The destination is
 *    "[host]" or "[host]:port" (that host's addresses, no MX look-up)
 *    or "host" / "host:port" (host's MX records, like a domain).
 * 2. Else DNS (RFC 5321 5.1): MX records in preference order (equal
 *    preferences shuffled); no MX records: the domain's own A/AAAA (the
 *    implicit MX); a null MX (RFC 7505, one "0 ." record) is permanent.
 *    MX hosts that are ourselves (the hostname setting, or an address of
 *    one of our interfaces) are dropped with every host of equal or
 *    lower preference (backup MX: only better MX hosts are tried).
 *
 * Look-ups use the C library's resolver (res_nquery) with the system's
 * /etc/resolv.conf, or the one server of the nameserver setting (tests).
 * Host addresses: A first, then AAAA. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mxqueue.h"
#include "table.h"

#define MX_MAX 32

struct mx {
	int pref;
	char name[NS_MAXDNAME];
};

struct resolver {
	struct __res_state res;
	int ok;
	int custom;		/* nameserver setting */
};

static int
res_setup(const struct mxq *q, struct resolver *r)
{
	char host[128], *port;
	struct in_addr in;

	memset(r, 0, sizeof *r);
	if (res_ninit(&r->res) != 0)
		return -1;
	r->ok = 1;
	r->res.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
	if (!q->s.nameserver[0])
		return 0;
	strlcpy(host, q->s.nameserver, sizeof host);
	port = strchr(host, ':');
	if (port)
		*port++ = 0;
	if (inet_pton(AF_INET, host, &in) != 1) {
		log_warn("nameserver %s: not an IPv4 address", q->s.nameserver);
		return -1;
	}
	r->res.nscount = 1;
	memset(&r->res.nsaddr_list[0], 0, sizeof r->res.nsaddr_list[0]);
	r->res.nsaddr_list[0].sin_family = AF_INET;
	r->res.nsaddr_list[0].sin_addr = in;
	r->res.nsaddr_list[0].sin_port = htons(port ? (unsigned short)atoi(port) : 53);
	r->res.retrans = 2;
	r->res.retry = 2;
	r->custom = 1;
	return 0;
}

/* Query name/type. Returns the answer length, 0 for NXDOMAIN,
 * -2 for no data, -1 for a temporary failure. */
static int
query(struct resolver *r, const char *name, int type, unsigned char *ans, int anslen)
{
	int n;

	n = res_nquery(&r->res, name, ns_c_in, type, ans, anslen);
	if (n >= 0)
		return n > 0 ? n : -1;
	switch (r->res.res_h_errno) {
	case HOST_NOT_FOUND:
		return 0;
	case NO_DATA:
		return -2;
	default:
		return -1;
	}
}

/* Addresses of host (type ns_t_a or ns_t_aaaa) appended to d.
 * Returns the number added, 0 none (no such host or no data), -1 temp. */
static int
addrs_of(struct resolver *r, const char *host, int port, struct dest *d)
{
	static const int types[] = { ns_t_a, ns_t_aaaa };
	unsigned char ans[NS_PACKETSZ * 4];
	int added = 0, temp = 0;
	size_t t;

	for (t = 0; t < 2; t++) {
		ns_msg msg;
		ns_rr rr;
		int n, i;
		n = query(r, host, types[t], ans, sizeof ans);
		if (n == -1) {
			temp = 1;
			continue;
		}
		if (n <= 0)
			continue;
		if (ns_initparse(ans, n, &msg) < 0) {
			temp = 1;
			continue;
		}
		for (i = 0; i < ns_msg_count(msg, ns_s_an) && d->n < MXQ_ADDRS_MAX; i++) {
			struct dest_addr *a;
			if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
				break;
			if ((int)ns_rr_type(rr) != types[t])
				continue;
			a = &d->a[d->n];
			memset(a, 0, sizeof *a);
			strlcpy(a->host, host, sizeof a->host);
			if (types[t] == ns_t_a && ns_rr_rdlen(rr) == 4) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
				sin->sin_family = AF_INET;
				sin->sin_port = htons((unsigned short)port);
				memcpy(&sin->sin_addr, ns_rr_rdata(rr), 4);
				a->salen = sizeof *sin;
			} else if (types[t] == ns_t_aaaa && ns_rr_rdlen(rr) == 16) {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
				sin6->sin6_family = AF_INET6;
				sin6->sin6_port = htons((unsigned short)port);
				memcpy(&sin6->sin6_addr, ns_rr_rdata(rr), 16);
				a->salen = sizeof *sin6;
			} else
				continue;
			d->n++;
			added++;
		}
	}
	if (!added && temp)
		return -1;
	return added;
}

/* A literal address, or getaddrinfo (hosts file) without a custom
 * nameserver, else DNS. Same returns as addrs_of. */
static int
host_addrs(struct resolver *r, const char *host, int port, struct dest *d)
{
	struct addrinfo hints, *res, *ai;
	int added = 0, e;
	char portstr[16];

	if (!r->custom || inet_pton(AF_INET, host, portstr) == 1 ||
	    strchr(host, ':')) {
		memset(&hints, 0, sizeof hints);
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = r->custom ? AI_NUMERICHOST : 0;
		snprintf(portstr, sizeof portstr, "%d", port);
		e = getaddrinfo(host, portstr, &hints, &res);
		if (e == EAI_AGAIN || e == EAI_SYSTEM || e == EAI_MEMORY)
			return -1;
		if (e == 0) {
			for (ai = res; ai && d->n < MXQ_ADDRS_MAX; ai = ai->ai_next) {
				struct dest_addr *a = &d->a[d->n];
				if (ai->ai_addrlen > sizeof a->sa)
					continue;
				memset(a, 0, sizeof *a);
				strlcpy(a->host, host, sizeof a->host);
				memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
				a->salen = ai->ai_addrlen;
				d->n++;
				added++;
			}
			freeaddrinfo(res);
			return added;
		}
		if (!r->custom)
			return 0;
	}
	return addrs_of(r, host, port, d);
}

static int
same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return 0;
	if (a->ss_family == AF_INET)
		return !memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		    &((const struct sockaddr_in *)b)->sin_addr, 4);
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		    &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
	return 0;
}

/* Is MX host name (with the addresses in d from index from) ourselves? */
static int
is_self(const struct mxq *q, const char *name, const struct dest *d, int from)
{
	struct ifaddrs *ifa, *i;
	int k, self = 0;

	if (!strcasecmp(name, q->s.hostname))
		return 1;
	if (getifaddrs(&ifa) < 0)
		return 0;
	for (k = from; k < d->n && !self; k++)
		for (i = ifa; i && !self; i = i->ifa_next)
			if (i->ifa_addr && same_addr(&d->a[k].sa, i->ifa_addr))
				self = 1;
	freeifaddrs(ifa);
	return self;
}

static int
mx_cmp(const void *a, const void *b)
{
	const struct mx *x = a, *y = b;

	return x->pref - y->pref;
}

/* MX look-up of name and addresses of the hosts, into d. */
static int
mx_route(const struct mxq *q, struct resolver *r, const char *name, int port,
    struct dest *d, char *err, size_t errlen)
{
	unsigned char ans[NS_PACKETSZ * 8];
	struct mx *mx = NULL;
	ns_msg msg;
	ns_rr rr;
	int n, i, nmx = 0, temp = 0, selfpref = -1;

	n = query(r, name, ns_t_mx, ans, sizeof ans);
	if (n == -1) {
		snprintf(err, errlen, "4.4.3 MX look-up for %s failed (temporary DNS error)", name);
		return ROUTE_TEMP;
	}
	if (n == 0) {
		snprintf(err, errlen, "5.1.2 domain %s does not exist (DNS NXDOMAIN)", name);
		return ROUTE_PERM;
	}
	if (n > 0) {
		if (ns_initparse(ans, n, &msg) < 0) {
			snprintf(err, errlen, "4.4.3 MX look-up for %s: bad DNS answer", name);
			return ROUTE_TEMP;
		}
		mx = xcalloc(MX_MAX, sizeof *mx);
		for (i = 0; i < ns_msg_count(msg, ns_s_an) && nmx < MX_MAX; i++) {
			const unsigned char *rd;
			if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
				break;
			if ((int)ns_rr_type(rr) != ns_t_mx || ns_rr_rdlen(rr) < 3)
				continue;
			rd = ns_rr_rdata(rr);
			mx[nmx].pref = (rd[0] << 8) | rd[1];
			if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 2, mx[nmx].name,
			    sizeof mx[nmx].name) < 0)
				continue;
			nmx++;
		}
	}
	if (nmx == 1 && (mx[0].name[0] == 0 || !strcmp(mx[0].name, "."))) {
		free(mx);
		snprintf(err, errlen, "5.1.10 domain %s accepts no mail (null MX)", name);
		return ROUTE_PERM;
	}
	if (nmx == 0) {		/* implicit MX: the domain itself */
		free(mx);
		n = host_addrs(r, name, port, d);
		if (n < 0) {
			snprintf(err, errlen, "4.4.3 address look-up for %s failed (temporary DNS error)",
			    name);
			return ROUTE_TEMP;
		}
		if (n == 0) {
			snprintf(err, errlen, "5.1.2 domain %s has no MX and no address", name);
			return ROUTE_PERM;
		}
		if (is_self(q, name, d, 0)) {
			snprintf(err, errlen, "4.4.6 mail for %s loops back to myself", name);
			d->n = 0;
			return ROUTE_TEMP;
		}
		return ROUTE_OK;
	}
	/* preference order; equal preferences in random order */
	for (i = 0; i < nmx; i++) {
		int j = i + (int)arc4random_uniform((uint32_t)(nmx - i));
		struct mx t = mx[i];
		mx[i] = mx[j];
		mx[j] = t;
	}
	qsort(mx, (size_t)nmx, sizeof *mx, mx_cmp);
	{
		int apref[MXQ_ADDRS_MAX], k, j, w;
		for (i = 0; i < nmx; i++) {
			int from = d->n;
			if (selfpref >= 0 && mx[i].pref >= selfpref)
				break;
			if (mx[i].name[0] == 0)
				continue;
			k = host_addrs(r, mx[i].name, port, d);
			if (k < 0) {
				temp = 1;
				log_debug("MX %s of %s: temporary DNS error", mx[i].name, name);
				continue;
			}
			if (is_self(q, mx[i].name, d, from)) {
				d->n = from;	/* ourselves: only better MX hosts count */
				selfpref = mx[i].pref;
				continue;
			}
			for (j = from; j < d->n; j++)
				apref[j] = mx[i].pref;
		}
		/* hosts as preferred as ourselves go too */
		for (j = w = 0; selfpref >= 0 && j < d->n; j++)
			if (apref[j] < selfpref)
				d->a[w++] = d->a[j];
		if (selfpref >= 0)
			d->n = w;
	}
	free(mx);
	if (d->n > 0)
		return ROUTE_OK;
	if (selfpref >= 0) {
		snprintf(err, errlen, "4.4.6 mail for %s loops back to myself (no MX host "
		    "better than ours is reachable)", name);
		return ROUTE_TEMP;
	}
	if (temp) {
		snprintf(err, errlen, "4.4.3 MX hosts of %s: temporary DNS error", name);
		return ROUTE_TEMP;
	}
	snprintf(err, errlen, "5.4.4 no MX host of %s has an address", name);
	return ROUTE_PERM;
}

/* routes.cdb value for domain: exact, .parents, then "*". */
static int
route_lookup(const struct mxq *q, const char *domain, char *dest, size_t destlen)
{
	struct table t;
	struct buf v = BUF_INIT;
	char key[300];
	const char *p;
	int r = 0;

	if (table_open(&t, q->s.confdir, "routes") < 0)
		return errno == ENOENT ? 0 : -1;
	if ((r = table_get(&t, domain, strlen(domain), &v)) == 0) {
		for (p = strchr(domain, '.'); p && r == 0; p = strchr(p + 1, '.')) {
			snprintf(key, sizeof key, "%s", p);
			r = table_get(&t, key, strlen(key), &v);
		}
		if (r == 0)
			r = table_get(&t, "*", 1, &v);
	}
	if (r == 1) {
		const char *sp = strchr(v.s, ' ');
		strlcpy(dest, sp ? sp + 1 : v.s, destlen);
	}
	buf_free(&v);
	table_close(&t);
	return r;
}

int
route_resolve(const struct mxq *q, const char *domain, struct dest *d, char *err,
    size_t errlen)
{
	struct resolver r;
	char dest[600], host[300], *p;
	int port = (int)q->s.smtp_port, rc, lit = 0;

	memset(d, 0, sizeof *d);
	if (res_setup(q, &r) < 0) {
		if (r.ok)
			res_nclose(&r.res);
		snprintf(err, errlen, "4.3.5 cannot set up the DNS resolver");
		return ROUTE_TEMP;
	}
	rc = route_lookup(q, domain, dest, sizeof dest);
	if (rc < 0) {
		res_nclose(&r.res);
		snprintf(err, errlen, "4.3.0 cannot read the routes table");
		return ROUTE_TEMP;
	}
	if (rc == 1) {
		d->routed = 1;
		p = dest;
		if (*p == '[') {
			char *e = strchr(p, ']');
			if (!e) {
				res_nclose(&r.res);
				snprintf(err, errlen, "4.3.5 bad route for %s: %s", domain, dest);
				return ROUTE_TEMP;
			}
			snprintf(host, sizeof host, "%.*s", (int)(e - p - 1), p + 1);
			lit = 1;
			p = e + 1;
			if (*p == ':')
				port = atoi(p + 1);
		} else {
			char *c = strrchr(p, ':');
			if (c) {
				port = atoi(c + 1);
				*c = 0;
			}
			strlcpy(host, p, sizeof host);
		}
		if (port <= 0 || port > 65535) {
			res_nclose(&r.res);
			snprintf(err, errlen, "4.3.5 bad port in the route for %s", domain);
			return ROUTE_TEMP;
		}
		if (lit) {
			rc = host_addrs(&r, host, port, d);
			res_nclose(&r.res);
			if (rc < 0) {
				snprintf(err, errlen, "4.4.3 address look-up for %s failed (route of %s)",
				    host, domain);
				return ROUTE_TEMP;
			}
			if (rc == 0) {
				snprintf(err, errlen, "4.4.4 route host %s of %s has no address", host,
				    domain);
				return ROUTE_TEMP;
			}
			return ROUTE_OK;
		}
		rc = mx_route(q, &r, host, port, d, err, errlen);
		res_nclose(&r.res);
		if (rc == ROUTE_PERM) {	/* an admin's route: never bounce on it */
			err[0] = '4';
			return ROUTE_TEMP;
		}
		return rc;
	}
	/* a domain literal: user@[192.0.2.1] */
	if (domain[0] == '[') {
		const char *e = strchr(domain, ']');
		const char *s = domain + 1;
		if (!strncasecmp(s, "IPv6:", 5))
			s += 5;
		snprintf(host, sizeof host, "%.*s", e ? (int)(e - s) : 0, s);
		rc = host[0] ? host_addrs(&r, host, port, d) : 0;
		res_nclose(&r.res);
		if (rc <= 0) {
			snprintf(err, errlen, "5.1.2 bad address literal %s", domain);
			return ROUTE_PERM;
		}
		if (is_self(q, "", d, 0)) {
			d->n = 0;
			snprintf(err, errlen, "5.4.6 mail for %s loops back to myself", domain);
			return ROUTE_PERM;
		}
		return ROUTE_OK;
	}
	rc = mx_route(q, &r, domain, port, d, err, errlen);
	res_nclose(&r.res);
	return rc;
}
