/*
 * mkcdb: compile the text tables in CONFDIR into CDB files, atomically.
 *
 * Every line is validated before anything is published: on any error
 * the reasons are printed as "file:line: reason", the old TABLE.cdb is
 * left untouched and mkcdb exits 100. Publishing is tmp file, fsync,
 * close, rename, fsync of the directory, so a reader sees the old table
 * or the new one, never a mix.
 */
#include <sys/file.h>
#include <pthread.h>
#include <sys/stat.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libutil.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cdb.h>

#include "buf.h"
#include "log.h"
#include "settings.h"
#include "tables.h"

#define MAX_REPORTED 20		/* bad lines reported before giving up */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mkcdb [-c CONFDIR] [-f] [-n] [-q] [TABLE...]\n"
	    "       mkcdb -g INPUT OUTPUT.cdb\n"
	    "  -c DIR  configuration directory (default $MXCONF or " "/etc/mx)\n"
	    "  -f      rebuild every table, not only the stale ones\n"
	    "  -n      check only: validate, write nothing\n"
	    "  -q      quiet: no line per rebuilt table\n"
	    "  -g      generic: \"key value\" lines into OUTPUT.cdb\n"
	    "tables: access domains backup mailboxes routes auth senders\n");
	exit(EXIT_PERM);
}

/* ---- duplicate detection: open addressing on 64-bit key hashes ---- */

struct seen {
	uint64_t *hash;		/* 0 = empty slot */
	uint32_t *line;
	size_t cap, n;
	int shift;		/* 64 - log2(cap) */
};

/* Slot of a hash: from the high bits of a Fibonacci-hashed value
 * (with FNV-1a, whose low bits depend only on the low bits of the
 * input bytes, h & (cap - 1) made long probe chains and cost half of
 * mkcdb's time on an access table). */
static size_t
slot(const struct seen *s, uint64_t h)
{
	return (size_t)((h * 0x9e3779b97f4a7c15ULL) >> s->shift);
}

static uint64_t
hash64(const char *k, size_t n)
{
	/* 8 bytes a step (FNV-1a's byte a step showed in profiles): each
	 * step is a bijection of the state, the length is in the seed */
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;

	for (; n >= 8; k += 8, n -= 8) {
		memcpy(&w, k, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
	}
	if (n) {
		w = 0;
		memcpy(&w, k, n);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
	}
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 29;
	return h ? h : 1;
}

static void
seen_grow(struct seen *s)
{
	struct seen t = { NULL, NULL, s->cap ? s->cap * 2 : 1024, 0, s->cap ? s->shift - 1 : 64 - 10 };
	size_t i;

	t.hash = xcalloc(t.cap, sizeof *t.hash);
	t.line = xcalloc(t.cap, sizeof *t.line);
	for (i = 0; i < s->cap; i++) {
		size_t j;
		if (!s->hash[i])
			continue;
		for (j = slot(&t, s->hash[i]); t.hash[j]; j = (j + 1) & (t.cap - 1))
			;
		t.hash[j] = s->hash[i];
		t.line[j] = s->line[i];
		t.n++;
	}
	free(s->hash);
	free(s->line);
	*s = t;
}

/* Returns 0 if new, else the line of the earlier key with the same hash. */
static uint32_t
seen_add(struct seen *s, uint64_t h, uint32_t line)
{
	size_t j;

	if ((s->n + 1) * 2 > s->cap)
		seen_grow(s);
	for (j = slot(s, h); s->hash[j]; j = (j + 1) & (s->cap - 1))
		if (s->hash[j] == h)
			return s->line[j];
	s->hash[j] = h;
	s->line[j] = line;
	s->n++;
	return 0;
}

/* ---- fast path: all key hashes at once, duplicates looked for at the end ----
 *
 * Inserting a million keys into the table above costs a cache and TLB
 * miss each; appending the hashes to an array and looking for equal
 * ones at the end (partition by the top bits, then a small table per
 * part that stays in cache) is several times faster. It can only say
 * "no duplicates" or "maybe": on "maybe", as on any bad line, compile()
 * starts over with the exact line-by-line pass, which prints the same
 * messages as ever. */

struct hashes {
	uint64_t *h;
	size_t n, cap;
};

static void
hashes_add(struct hashes *v, uint64_t h)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 65536;
		v->h = xreallocarray(v->h, v->cap, sizeof *v->h);
	}
	v->h[v->n++] = h;
}

#define PART_BITS 11

/* 1 if two hashes are equal, else 0; frees v. */
static int
hashes_dup(struct hashes *v)
{
	size_t *start, i, p, maxn = 0, setcap;
	uint64_t *part, *set;
	int dup = 0;

	if (v->n < 2)
		goto out;
	start = xcalloc((1 << PART_BITS) + 1, sizeof *start);
	for (i = 0; i < v->n; i++)
		start[((v->h[i] * 0x9e3779b97f4a7c15ULL) >> (64 - PART_BITS)) + 1]++;
	for (p = 0; p < 1 << PART_BITS; p++) {
		if (start[p + 1] > maxn)
			maxn = start[p + 1];
		start[p + 1] += start[p];
	}
	part = xreallocarray(NULL, v->n, sizeof *part);
	{
		size_t *pos = xreallocarray(NULL, 1 << PART_BITS, sizeof *pos);
		memcpy(pos, start, (1 << PART_BITS) * sizeof *pos);
		for (i = 0; i < v->n; i++)
			part[pos[(v->h[i] * 0x9e3779b97f4a7c15ULL) >> (64 - PART_BITS)]++] = v->h[i];
		free(pos);
	}
	free(v->h);
	v->h = NULL;
	for (setcap = 16; setcap < 2 * maxn; setcap *= 2)
		;
	set = xreallocarray(NULL, setcap, sizeof *set);
	for (p = 0; p < 1 << PART_BITS && !dup; p++) {
		size_t n = start[p + 1] - start[p], cap = 16;
		int bits = 4;

		if (n < 2)
			continue;
		while (cap < 2 * n) {
			cap *= 2;
			bits++;
		}
		memset(set, 0, cap * sizeof *set);
		for (i = start[p]; i < start[p + 1]; i++) {
			uint64_t h = part[i];	/* never 0 */
			/* the bits below the ones that chose the part */
			size_t j = (size_t)(((h * 0x9e3779b97f4a7c15ULL) << PART_BITS) >> (64 - bits));
			for (; set[j]; j = (j + 1) & (cap - 1))
				if (set[j] == h) {
					dup = 1;
					break;
				}
			set[j] = h;
		}
	}
	free(set);
	free(part);
	free(start);
out:
	free(v->h);
	v->h = NULL;
	v->n = v->cap = 0;
	return dup;
}

/* ---- one compilation ---- */

struct build {
	const char *src;	/* text file, for messages */
	struct cdb_make cm;
	struct seen seen;	/* exact pass */
	struct hashes hashes;	/* fast pass */
	int fast;		/* fast pass: report nothing, stop at trouble */
	int retry;		/* fast pass met a bad line: start over exactly */
	int lineno;
	int errors;
	int ioerr;
	int check_only;
	off_t written, started;	/* record bytes; writeback started up to */
	struct pipeline *pl;	/* fast pass: records go to the writer thread */
};

/* Start writing back what has been written so far, in 8 MB steps, so
 * the fsync before the rename has little left to wait for (on a big
 * table it was a third of the time). Only a hint: errors are ignored,
 * the fsync still decides. Page 0 (the header, written last) is left
 * alone. */
#define WRITEBACK_STEP (8 << 20)
static void
writeback(struct build *b)
{
	if (b->written - b->started < WRITEBACK_STEP)
		return;
	if (!b->started)
		b->started = 4096;
	(void)sync_file_range(b->cm.cdb_fd, b->started, b->written - b->started,
	    SYNC_FILE_RANGE_WRITE);
	b->started = b->written;
}

/* ---- fast pass on two cores ----
 *
 * Parsing and validating (this thread) and hashing and writing the
 * CDB (a writer thread) take about the same time on a big table, so
 * the fast pass hands the records over in 1 MB batches. The order of
 * the records, the file and every message are the same as from one
 * thread: the writer only does what emit() did, in order, and any
 * trouble sends compile() back to the exact pass. */

#define BATCH_BYTES (1 << 20)
#define NBATCH 4

struct pipeline {
	struct build *b;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *buf[NBATCH];
	size_t len[NBATCH];
	int queued[NBATCH];	/* buf[i] waits for the writer */
	int cur;		/* the batch being filled */
	int done;		/* no more batches */
	int err;		/* the writer's first errno (under mu) */
};

static int emit_record(struct build *b, const char *k, size_t kl, const char *v, size_t vl,
    int *ioerr);

static void *
writer(void *arg)
{
	struct pipeline *pl = arg;
	int i = 0, err = 0;

	for (;;) {
		size_t off, n;
		const char *p;

		pthread_mutex_lock(&pl->mu);
		while (!pl->queued[i] && !pl->done)
			pthread_cond_wait(&pl->cv, &pl->mu);
		if (!pl->queued[i]) {	/* done and drained */
			pthread_mutex_unlock(&pl->mu);
			return NULL;
		}
		pthread_mutex_unlock(&pl->mu);
		p = pl->buf[i];
		n = pl->len[i];
		for (off = 0; off < n && !err; ) {
			uint32_t kl, vl;
			int e = 0;

			memcpy(&kl, p + off, 4);
			memcpy(&vl, p + off + 4, 4);
			if (emit_record(pl->b, p + off + 8, kl, p + off + 8 + kl, vl, &e) < 0)
				err = e ? e : EIO;
			off += 8 + (size_t)kl + vl;
		}
		pthread_mutex_lock(&pl->mu);
		if (err && !pl->err)
			pl->err = err;
		pl->queued[i] = 0;
		pthread_cond_broadcast(&pl->cv);
		pthread_mutex_unlock(&pl->mu);
		i = (i + 1) % NBATCH;
	}
}

/* 0 started (b->pl set), -1 not (the pass runs on one thread) */
static int
pipeline_start(struct build *b)
{
	struct pipeline *pl = xcalloc(1, sizeof *pl);
	int i;

	pl->b = b;
	for (i = 0; i < NBATCH; i++)
		pl->buf[i] = xmalloc(BATCH_BYTES);
	pthread_mutex_init(&pl->mu, NULL);
	pthread_cond_init(&pl->cv, NULL);
	if (pthread_create(&pl->th, NULL, writer, pl) != 0) {
		for (i = 0; i < NBATCH; i++)
			free(pl->buf[i]);
		free(pl);
		return -1;
	}
	b->pl = pl;
	return 0;
}

/* Queue the current batch, wait for a free one; the writer's errno or 0. */
static int
pipeline_send(struct pipeline *pl)
{
	int err;

	pthread_mutex_lock(&pl->mu);
	pl->queued[pl->cur] = 1;
	pthread_cond_broadcast(&pl->cv);
	pl->cur = (pl->cur + 1) % NBATCH;
	while (pl->queued[pl->cur])
		pthread_cond_wait(&pl->cv, &pl->mu);
	err = pl->err;
	pthread_mutex_unlock(&pl->mu);
	pl->len[pl->cur] = 0;
	return err;
}

/* Wait for the writer to finish everything; its error becomes b->ioerr. */
static void
pipeline_stop(struct build *b)
{
	struct pipeline *pl = b->pl;
	int i;

	if (!pl)
		return;
	pthread_mutex_lock(&pl->mu);
	if (pl->len[pl->cur])
		pl->queued[pl->cur] = 1;
	pl->done = 1;
	pthread_cond_broadcast(&pl->cv);
	pthread_mutex_unlock(&pl->mu);
	pthread_join(pl->th, NULL);
	if (pl->err && !b->ioerr)
		b->ioerr = pl->err;
	pthread_mutex_destroy(&pl->mu);
	pthread_cond_destroy(&pl->cv);
	for (i = 0; i < NBATCH; i++)
		free(pl->buf[i]);
	free(pl);
	b->pl = NULL;
}

static int
pipeline_put(struct build *b, const char *k, size_t kl, const char *v, size_t vl)
{
	struct pipeline *pl = b->pl;
	size_t need = 8 + kl + vl;
	uint32_t n;
	char *p;

	if (need > BATCH_BYTES) {	/* a huge record: let the exact pass have it */
		b->ioerr = EFBIG;
		return -1;
	}
	if (pl->len[pl->cur] + need > BATCH_BYTES && (b->ioerr = pipeline_send(pl)))
		return -1;
	p = pl->buf[pl->cur] + pl->len[pl->cur];
	n = (uint32_t)kl;
	memcpy(p, &n, 4);
	n = (uint32_t)vl;
	memcpy(p + 4, &n, 4);
	memcpy(p + 8, k, kl);
	memcpy(p + 8 + kl, v, vl);
	pl->len[pl->cur] += need;
	return 0;
}

static int
emit(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct build *b = ctx;

	if (b->pl)
		return pipeline_put(b, k, kl, v, vl);
	return emit_record(b, k, kl, v, vl, &b->ioerr);
}

/* The record's work; a write error goes to *ioerr (the writer thread's
 * own variable when it runs there). */
static int
emit_record(struct build *b, const char *k, size_t kl, const char *v, size_t vl, int *ioerr)
{
	uint32_t first;

	if (b->fast) {
		if (k[0] != '/')
			hashes_add(&b->hashes, hash64(k, kl));
	} else if (k[0] != '/') {	/* "/..." keys are mkcdb's own records */
		first = seen_add(&b->seen, hash64(k, kl), (uint32_t)b->lineno);
		/* equal hashes: confirm against the data already written */
		if (first && (b->check_only || cdb_make_exists(&b->cm, k, (unsigned)kl) > 0)) {
			fprintf(stderr, "%s:%d: duplicate key \"%.*s\" (first on line %u)\n",
			    b->src, b->lineno, (int)(kl > 200 ? 200 : kl), k, first);
			b->errors++;
			return 0;
		}
	}
	if (b->check_only)
		return 0;
	if (cdb_make_add(&b->cm, k, (unsigned)kl, v, (unsigned)vl) < 0) {
		*ioerr = errno ? errno : EIO;
		return -1;
	}
	b->written += (off_t)(8 + kl + vl);
	writeback(b);
	return 0;
}

static const char *
generic_parse(struct table_state *st, char *line, int lineno, emit_fn fn, void *ctx)
{
	char *k = line, *v = line;

	(void)st;
	(void)lineno;
	while (*v && !isspace((unsigned char)*v))
		v++;
	if (*v) {
		*v++ = 0;
		while (isspace((unsigned char)*v))
			v++;
	}
	return fn(ctx, k, strlen(k), v, strlen(v)) < 0 ? "write error" : NULL;
}

static const struct table_format generic_format = { "generic", generic_parse, NULL };

static int
fsync_dir(const char *file)
{
	char dir[4200], *slash;
	int fd, r;

	strlcpy(dir, file, sizeof dir);
	if ((slash = strrchr(dir, '/')))
		*slash = 0;
	else
		strlcpy(dir, ".", sizeof dir);
	if ((fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY)) < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/* ---- input lines ----
 * getline() per line was a tenth of the parsing thread's time; this
 * reads 1 MB at a time. Each line is returned without its '\n' (the
 * callers strip trailing blanks anyway), NUL-terminated in place. */
struct reader {
	int fd;
	char *buf;
	size_t cap, pos, end;	/* unread: buf[pos..end) */
	size_t clean;		/* buf[0..clean) has no NUL byte */
	int eof, err;
};

/* 1 a line, 0 end of input, -1 read error (r->err) */
static int
rd_line(struct reader *r, char **line, size_t *len)
{
	size_t scanned = 0;

	for (;;) {
		char *nl = r->end > r->pos + scanned ?
		    memchr(r->buf + r->pos + scanned, '\n', r->end - r->pos - scanned) : NULL;
		ssize_t k;

		if (nl) {
			*line = r->buf + r->pos;
			*len = (size_t)(nl - *line);
			*nl = 0;
			r->pos = (size_t)(nl - r->buf) + 1;
			return 1;
		}
		scanned = r->end - r->pos;
		if (r->eof) {
			if (!scanned)
				return 0;
			*line = r->buf + r->pos;	/* the last line has no '\n' */
			*len = scanned;
			r->buf[r->end] = 0;
			r->pos = r->end;
			return 1;
		}
		if (r->pos) {
			memmove(r->buf, r->buf + r->pos, scanned);
			r->clean = r->clean > r->pos ? r->clean - r->pos : 0;
			r->end = scanned;
			r->pos = 0;
		}
		if (r->end + 1 >= r->cap) {
			r->cap = r->cap ? r->cap * 2 : 1 << 20;
			r->buf = xreallocarray(r->buf, r->cap, 1);
		}
		do
			k = read(r->fd, r->buf + r->end, r->cap - 1 - r->end);
		while (k < 0 && errno == EINTR);
		if (k < 0) {
			r->err = errno;
			return -1;
		}
		if (k == 0)
			r->eof = 1;
		else {
			/* one look for NUL bytes per block, not one per line */
			if (r->clean == r->end && !memchr(r->buf + r->end, 0, (size_t)k))
				r->clean = r->end + (size_t)k;
			r->end += (size_t)k;
		}
	}
}

/* The duplicate check of the fast pass runs while the CDB's index is
 * being written (a duplicate found then means starting over). */
struct dupcheck {
	pthread_t th;
	struct hashes h;	/* the thread's own */
	int running, dup;
};

static void *
dup_thread(void *arg)
{
	struct dupcheck *d = arg;

	d->dup = hashes_dup(&d->h);
	return NULL;
}

/* Start the check, or do it now; the result comes from dup_join(). */
static void
dup_start(struct dupcheck *d, struct hashes *h, int now)
{
	d->h = *h;
	memset(h, 0, sizeof *h);
	if (now || pthread_create(&d->th, NULL, dup_thread, d) != 0)
		d->dup = hashes_dup(&d->h);
	else
		d->running = 1;
}

/* 1 if a duplicate hash was found; once per dup_start() */
static int
dup_join(struct dupcheck *d)
{
	int r;

	if (d->running) {
		pthread_join(d->th, NULL);
		d->running = 0;
	}
	r = d->dup;
	d->dup = 0;
	return r;
}

/* From the fast pass to the exact one: input from the start, empty
 * output, nothing seen. finished: cdb_make_finish() was called already.
 * 0 ok, -1 system error. */
static int
restart(struct build *b, struct table_state *st, struct reader *rd, int fd, int finished)
{
	if (!b->check_only) {
		/* tinycdb has no cdb_make_free: finishing frees the record
		 * lists; starting again at once leaves nothing to free twice */
		if (!finished)
			(void)cdb_make_finish(&b->cm);
		(void)cdb_make_start(&b->cm, fd);
	}
	free(b->hashes.h);
	memset(&b->hashes, 0, sizeof b->hashes);
	b->fast = b->retry = 0;
	b->lineno = b->errors = b->ioerr = 0;
	b->written = b->started = 0;
	memset(st, 0, sizeof *st);
	rd->pos = rd->end = rd->clean = 0;
	rd->eof = rd->err = 0;
	if (lseek(rd->fd, 0, SEEK_SET) < 0)
		return -1;
	if (b->check_only)
		return 0;
	if (lseek(fd, 0, SEEK_SET) < 0 || ftruncate(fd, 0) < 0)
		return -1;
	return 0;
}

/* Read src, write dst atomically. 0 ok, EXIT_PERM bad input, EXIT_TEMP system. */
static int
compile(const char *src, const char *dst, const struct table_format *fmt, int check_only)
{
	struct build b;
	struct table_state st;
	char tmp[4300], *line;
	size_t n;
	struct reader rd;
	struct dupcheck dc;
	int fin;
	FILE *in;
	int fd = -1, rc = 0, making = 0;

	memset(&b, 0, sizeof b);
	memset(&st, 0, sizeof st);
	b.src = src;
	b.check_only = check_only;
	memset(&rd, 0, sizeof rd);
	memset(&dc, 0, sizeof dc);
	if (!(in = fopen(src, "r"))) {
		log_warnsys("cannot open %s", src);
		return EXIT_TEMP;
	}
	rd.fd = fileno(in);	/* read with rd_line() only */
	if (!check_only) {
		snprintf(tmp, sizeof tmp, "%s.tmp", dst);
		/* flopen locks before truncating: concurrent runs serialise */
		if ((fd = flopen(tmp, O_RDWR | O_CREAT, 0644)) < 0 || ftruncate(fd, 0) < 0) {
			log_warnsys("cannot create %s", tmp);
			fclose(in);
			if (fd >= 0)
				close(fd);
			return EXIT_TEMP;
		}
		/* auth.cdb holds password hashes: never world-readable; a
		 * rebuild keeps the group (and group read) of the old one */
		if (!strcmp(fmt->name, "auth")) {
			struct stat ost;
			int have = stat(dst, &ost) == 0;
			if (fchmod(fd, have ? (ost.st_mode & 0660) | 0600 : 0640) < 0 ||
			    (have && fchown(fd, (uid_t)-1, ost.st_gid) < 0 && errno != EPERM))
				log_warnsys("cannot set the mode of %s", tmp);
		}
		if (cdb_make_start(&b.cm, fd) < 0) {
			log_warnsys("cdb_make_start %s", tmp);
			rc = EXIT_TEMP;
			goto out;
		}
		making = 1;
	}
	/* the fast pass needs to be able to read the input again */
	{
		struct stat ist;
		b.fast = fstat(fileno(in), &ist) == 0 && S_ISREG(ist.st_mode);
		/* a second thread pays off on big tables only */
		if (b.fast && !check_only && ist.st_size >= (1 << 20))
			(void)pipeline_start(&b);
	}
again:
	while (rd_line(&rd, &line, &n) > 0) {
		const char *why;
		char *p;

		b.lineno++;
		if ((size_t)(line - rd.buf) + n > rd.clean && memchr(line, 0, n))
			why = "NUL byte in line";
		else if (!*(p = n && !isspace((unsigned char)line[0]) &&
		    !isspace((unsigned char)line[n - 1]) && !memchr(line, '#', n) ?
		    line : table_strip(line)))	/* nothing to strip: skip the call */
			continue;
		else
			why = fmt->parse(&st, p, b.lineno, emit, &b);
		if (b.ioerr)
			break;
		if (why && b.fast) {
			b.retry = 1;
			break;
		}
		if (why) {
			fprintf(stderr, "%s:%d: %s\n", src, b.lineno, why);
			b.errors++;
		}
		if (b.errors >= MAX_REPORTED) {
			fprintf(stderr, "%s: too many errors, giving up\n", src);
			break;
		}
	}
	pipeline_stop(&b);
	if (b.fast && !b.retry && !b.ioerr && !rd.err) {
		dup_start(&dc, &b.hashes, check_only);
		if (!dc.running && dup_join(&dc))
			b.retry = 1;
	}
	if (b.fast && (b.retry || b.ioerr || rd.err)) {
redo:
		/* anything unusual: start over with the exact pass */
		if (restart(&b, &st, &rd, fd, 0) < 0) {
			log_warnsys("cannot create %s", tmp);
			rc = EXIT_TEMP;
			goto out;
		}
		goto again;
	}
	if (rd.err) {
		errno = rd.err;
		log_warnsys("read error on %s", src);
		rc = EXIT_TEMP;
		goto out;
	}
	if (!b.errors && !b.ioerr && fmt->finish) {
		const char *why = fmt->finish(&st, emit, &b);
		if (why && !b.ioerr) {
			fprintf(stderr, "%s: %s\n", src, why);
			b.errors++;
		}
	}
	if ((b.ioerr || b.errors) && dup_join(&dc))
		goto redo;
	if (b.ioerr) {
		errno = b.ioerr;
		log_warnsys("write error on %s", tmp);
		rc = EXIT_TEMP;
		goto out;
	}
	if (b.errors) {
		fprintf(stderr, "%s: %d bad line%s; %s\n", src, b.errors, b.errors > 1 ? "s" : "",
		    check_only ? "not valid" : "old table left in place");
		rc = EXIT_PERM;
		goto out;
	}
	if (check_only)
		goto out;
	making = 0;
	fin = cdb_make_finish(&b.cm);
	if (dup_join(&dc)) {
		making = 1;
		if (restart(&b, &st, &rd, fd, 1) < 0) {
			log_warnsys("cannot create %s", tmp);
			rc = EXIT_TEMP;
			goto out;
		}
		goto again;
	}
	if (fin < 0 || fsync(fd) < 0) {
		log_warnsys("cannot write %s", tmp);
		rc = EXIT_TEMP;
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		log_warnsys("cannot close %s", tmp);
		rc = EXIT_TEMP;
		goto out;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		log_warnsys("cannot rename %s to %s", tmp, dst);
		rc = EXIT_TEMP;
		goto out;
	}
	if (fsync_dir(dst) < 0)
		log_warnsys("fsync of the directory of %s", dst);
out:
	pipeline_stop(&b);
	(void)dup_join(&dc);
	free(dc.h.h);
	if (making)
		(void)cdb_make_finish(&b.cm);	/* only to free its memory; tmp is discarded */
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	} else if (rc && !check_only)
		unlink(tmp);
	free(rd.buf);
	free(b.seen.hash);
	free(b.seen.line);
	free(b.hashes.h);
	fclose(in);
	return rc;
}

static int
stale(const char *src, const char *dst)
{
	struct stat s, d;

	if (stat(dst, &d) < 0)
		return 1;
	if (stat(src, &s) < 0)
		return 0;
	return s.st_mtim.tv_sec > d.st_mtim.tv_sec ||
	    (s.st_mtim.tv_sec == d.st_mtim.tv_sec && s.st_mtim.tv_nsec >= d.st_mtim.tv_nsec);
}

static int
do_table(const char *confdir, const char *name, int force, int check_only, int quiet)
{
	const struct table_format *fmt = table_format(name);
	char src[4200], dst[4200];
	int rc;

	if (!fmt) {
		log_warn("unknown table: %s", name);
		return EXIT_PERM;
	}
	snprintf(src, sizeof src, "%s/%s", confdir, name);
	snprintf(dst, sizeof dst, "%s/%s.cdb", confdir, name);
	if (!force && !check_only && !stale(src, dst))
		return 0;
	rc = compile(src, dst, fmt, check_only);
	if (rc == 0 && !quiet)
		printf("%s: %s\n", check_only ? "ok" : "rebuilt", check_only ? src : dst);
	return rc;
}

static int
worse(int a, int b)
{
	return a == EXIT_TEMP || b == EXIT_TEMP ? EXIT_TEMP : a ? a : b;
}

int
main(int argc, char **argv)
{
	const char *confopt = NULL;
	char err[512];
	struct settings s;
	int c, force = 0, check_only = 0, generic = 0, quiet = 0, rc = 0, i;

	log_init("mkcdb", NULL);
	while ((c = getopt(argc, argv, "c:fgnqh")) != -1) {
		switch (c) {
		case 'c': confopt = optarg; break;
		case 'f': force = 1; break;
		case 'g': generic = 1; break;
		case 'n': check_only = 1; break;
		case 'q': quiet = 1; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (generic) {
		if (argc != 2)
			usage();
		return compile(argv[0], argv[1], &generic_format, check_only);
	}
	/* settings are read by the programs directly; validate them here too */
	if (settings_load(&s, settings_confdir(confopt), err, sizeof err) < 0) {
		fprintf(stderr, "%s\n", err);
		return EXIT_PERM;
	}
	if (argc > 0) {
		for (i = 0; i < argc; i++)
			rc = worse(rc, do_table(s.confdir, argv[i], 1, check_only, quiet));
	} else {
		for (i = 0; table_names[i]; i++) {
			char src[4200];
			snprintf(src, sizeof src, "%s/%s", s.confdir, table_names[i]);
			if (access(src, F_OK) == 0)
				rc = worse(rc, do_table(s.confdir, table_names[i], force, check_only, quiet));
		}
	}
	settings_free(&s);
	return rc;
}
