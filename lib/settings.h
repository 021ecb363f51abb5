/* settings: the scalar configuration file CONFDIR/settings
 * ("name value" lines, # comments), see mxconf(5).
 * Relative paths are taken relative to CONFDIR and returned absolute. */
#ifndef MX_SETTINGS_H
#define MX_SETTINGS_H
#include <stddef.h>

#define SETTINGS_MAX_POLICY 8
#define SETTINGS_MAX_MILTER 8

struct settings {
	char confdir[4096];	/* absolute */
	char hostname[256];	/* greeting, Received:, Maildir names */
	long long max_size;	/* message size limit, bytes */
	long long max_recipients;
	long long max_errors;	/* bad commands before 421 */
	long long max_hops;	/* Received:+Delivered-To: before 554 5.4.6 */
	long long timeout_command;	/* seconds */
	long long timeout_data;
	long long timeout_chain;	/* the delivery chain */
	long long timeout_policy;	/* one policy answer */
	long long max_connections;	/* own listener, global */
	long long max_per_ip;		/* own listener, per client IP */
	char mailroot[4096];	/* Maildirs live under here */
	char queuedir[4096];	/* durable queue for non-local recipients */
	char spooldir[4096];	/* smtpd-lite spools DATA here */
	long long spool_memory;	/* messages up to this size spool in memory */
	char user[64];		/* drop to this user when started as root */
	char access_default[16];	/* allow | deny | relay */
	char relay_by[16];	/* ip-or-auth | ip | auth: what lets a client relay */
	char recipient_delimiter[8];	/* "+": user+tag@dom reaches user */
	int create_maildirs;	/* create a missing listed Maildir */
	char bindir[4096];	/* where the programs are (for the default chain) */
	char *policy[SETTINGS_MAX_POLICY];	/* extra policy services */
	int npolicy;
	char *chain;		/* delivery chain command, NULL = default */
	int fork_servers;	/* -l: policy services and chain as fork servers */
	/* remote delivery (mxqueue): times in seconds */
	long long queue_workers;	/* deliveries at once */
	long long queue_per_destination;	/* deliveries at once per domain */
	long long queue_scan;		/* runner: longest sleep between scans */
	long long retry_min;		/* first retry interval */
	long long retry_max;		/* longest retry interval */
	long long queue_lifetime;	/* give up after this */
	long long delay_warning;	/* warn the sender after this, 0 off */
	char doublebounce_to[512];	/* failed bounces go here */
	char nameserver[128];		/* IP[:PORT] for MX look-ups, "" system */
	long long smtp_port;		/* port of MX (and route) hosts */
	long long smtp_timeout_connect;
	long long smtp_timeout_greeting;	/* 220 greeting, EHLO/HELO, QUIT */
	long long smtp_timeout_mail;
	long long smtp_timeout_rcpt;
	long long smtp_timeout_data;	/* DATA initiation (354) */
	long long smtp_timeout_block;	/* each write of the text */
	long long smtp_timeout_dot;	/* final reply after the dot */
	char queue_tls[16];	/* no | opportunistic: STARTTLS when offered */
	char queue_tls_ca_file[4096];	/* "" = none; else routes need verified TLS */
	/* smtpd-lite: TLS and SMTP AUTH (issue 8) */
	char tls_cert[4096];	/* PEM certificate chain, "" = no TLS */
	char tls_key[4096];	/* PEM private key, "" = in tls_cert */
	int auth_loopback_plaintext;	/* offer AUTH without TLS on loopback */
	long long auth_failure_delay;	/* seconds before a failed AUTH's reply */
	long long auth_max_failures;	/* failed AUTHs before 421 and close */
	int auth_sender_check;	/* MAIL FROM must be the user's (senders table) */
	char auth_checkpassword[4096];	/* qmail checkpassword command, "" = auth.cdb */
	/* smtpd-lite: milters (issue 9), "SPEC [option=value...]" each */
	char *milter[SETTINGS_MAX_MILTER];
	int nmilter;
	char milter_default_action[16];	/* tempfail | accept | reject */
	long long milter_connect_timeout;	/* seconds */
	long long milter_command_timeout;
	long long milter_content_timeout;
};

/* Load CONFDIR/settings (a missing file gives the defaults).
 * On error returns -1 and leaves "file:line: reason" in err. */
int settings_load(struct settings *s, const char *confdir, char *err, size_t errlen);
/* Confdir from -c, else $MXCONF, else the compiled-in default. */
const char *settings_confdir(const char *opt);
/* Print every setting, "name value", one a line (for mxconf -n style dumps). */
void settings_print(const struct settings *s);
void settings_free(struct settings *s);
#endif
