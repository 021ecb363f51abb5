/* auth.c: the checks behind SMTP AUTH (RFC 4954; the dialogue is in
 * session.c).
 *
 * Passwords are checked against CONFDIR/auth.cdb (user -> crypt(3)
 * hash, made by mkcdb from CONFDIR/auth, see mxconf(5) and mkauth(8))
 * with libcrypt's crypt_rn(). An unknown user costs the same hashing
 * as a known one (a fixed yescrypt hash stands in), and the result is
 * compared in constant time, so that timing tells little about which
 * users exist. The table is opened for each check: a rebuild applies
 * to the next attempt. */
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "smtpd.h"
#include "table.h"
#include "tables.h"

/* crypt("no such user, no such password", yescrypt, mkauth's cost) */
static const char dummy_hash[] =
    "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$MMeVP9PFcKG0M6AFpry9C5Ou19RmvbJ.Xouay3k7AQ7";

static int
b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
b64_decode(const char *in, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;

	if (n % 4)
		return -1;
	for (i = 0; i < n; i += 4) {
		int v[4], k, pad = 0;

		for (k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad || (v[k] = b64_val((unsigned char)in[i + k])) < 0)
				return -1;
		}
		if (o + 3 - (size_t)pad > cap)
			return -1;
		out[o++] = (char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

int
auth_available(const struct settings *s)
{
	char path[4200];

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
