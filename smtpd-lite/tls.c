/* tls.c: TLS for smtpd-lite (STARTTLS, RFC 3207; implicit TLS,
 * RFC 8314) with OpenSSL.
 *
 * The certificate and key (settings tls_cert, tls_key) are read for
 * every connection, when TLS starts: a renewed certificate is used by
 * the next connection, no restart needed. TLS 1.2 is the minimum; the
 * ciphers are OpenSSL's defaults (Debian's system policy). No session
 * cache and no tickets: each session is its own process, nothing could
 * be resumed. Renegotiation is refused. The handshake and all later
 * I/O run on the client descriptors of io.c, which then reads and
 * writes through the SSL object. */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "smtpd.h"

static SSL_CTX *ctx;

int
tls_configured(const struct settings *s)
{
	return s->tls_cert[0] != 0;
}

/* The last OpenSSL error as text (and the queue cleared). */
static const char *
tls_err(void)
{
	static char b[256];
	unsigned long e = ERR_get_error(), more;

	if (!e)
		return "no details";
	ERR_error_string_n(e, b, sizeof b);
	while ((more = ERR_get_error()))
		e = more;
	return b;
}

/* In the -l listener, before any fork: OpenSSL's initialisation (its
 * configuration, the default provider, the algorithm tables) is done
 * once and shared copy-on-write by every session, instead of being
 * built again in each one. The certificate is still read per session. */
void
tls_preinit(void)
{
	SSL_CTX *c;

	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL) != 1)
		return;
	if ((c = SSL_CTX_new(TLS_server_method())))
		SSL_CTX_free(c);
	ERR_clear_error();
}

int
tls_prepare(const struct settings *s)
{
	const char *key = s->tls_key[0] ? s->tls_key : s->tls_cert;

	if (ctx)
		return 0;
	if (!tls_configured(s))
		return -1;
	if (!(ctx = SSL_CTX_new(TLS_server_method()))) {
		log_warn("tls: cannot make a context: %s", tls_err());
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* partial writes: io.c retries with what is left; idle sessions
	 * give their read and write buffers back */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, s->tls_cert) != 1) {
		log_warn("tls: cannot load the certificate %s (settings: tls_cert): %s",
		    s->tls_cert, tls_err());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		log_warn("tls: cannot load the private key %s (settings: %s): %s", key,
		    s->tls_key[0] ? "tls_key" : "tls_cert", tls_err());
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_warn("tls: the key %s does not match the certificate %s: %s", key,
		    s->tls_cert, tls_err());
		goto fail;
	}
	return 0;
fail:
	SSL_CTX_free(ctx);
	ctx = NULL;
	return -1;
}

int
tls_handshake(long long timeout, const char *ip, struct tls_info *ti)
{
	long long deadline = now_ms() + timeout * 1000;
	const SSL_CIPHER *c;
	SSL *ssl;
	int rfd, wfd;

	memset(ti, 0, sizeof *ti);
	if (!ctx)
		return -1;
	io_fds(&rfd, &wfd);
	if (!(ssl = SSL_new(ctx)) || SSL_set_rfd(ssl, rfd) != 1 || SSL_set_wfd(ssl, wfd) != 1) {
		log_warn("tls: cannot set up a session: %s", tls_err());
		SSL_free(ssl);
		return -1;
	}
	/* the session holds its own reference; the certificate is read
	 * afresh by the next connection's process anyway */
	SSL_CTX_free(ctx);
	ctx = NULL;
	for (;;) {
		int r = SSL_accept(ssl), w;

		if (r == 1)
			break;
		switch (SSL_get_error(ssl, r)) {
		case SSL_ERROR_WANT_READ:
			w = wait_fd(rfd, POLLIN, deadline);
			break;
		case SSL_ERROR_WANT_WRITE:
			w = wait_fd(wfd, POLLOUT, deadline);
			break;
		default:
			log_info("tls handshake failed ip=%s: %s", ip, tls_err());
			SSL_free(ssl);
			return -1;
		}
		if (w <= 0) {
			log_info("tls handshake failed ip=%s: %s", ip, w == 0 ? "timeout" : strerror(errno));
			SSL_free(ssl);
			return -1;
		}
	}
	snprintf(ti->protocol, sizeof ti->protocol, "%s", SSL_get_version(ssl));
	c = SSL_get_current_cipher(ssl);
	snprintf(ti->cipher, sizeof ti->cipher, "%s", c ? SSL_CIPHER_get_name(c) : "unknown");
	ti->bits = c ? SSL_CIPHER_get_bits(c, &ti->alg_bits) : 0;
	io_set_tls(ssl);
	/* After STARTTLS we have nothing to say until the client's EHLO,
	 * which many clients hold back (Nagle) until their Finished is
	 * acknowledged: acknowledge now, not after the delayed-ACK timer
	 * (40 ms a session on Linux). Not a socket: no matter. */
	{
		int one = 1;
		(void)setsockopt(rfd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	}
	/* the handshake's temporary memory (certificate parsing, key
	 * exchange) back to the system: the session may idle for long */
	(void)malloc_trim(0);
	return 0;
}
