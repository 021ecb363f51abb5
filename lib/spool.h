/* spool: the unlinked temporary file a message travels in between our
 * programs (smtpd-lite's DATA, ruleproc's rewritten copy). Small ones
 * live in memory (memfd_create): a file on disk costs an inode
 * allocation, which on the bench machine's ext4 was about 0.2 ms of CPU
 * a file (doc/PERFORMANCE.md, issue 7). Neither kind is ever durable:
 * the file is unlinked from the start, durability is deliver's fsync
 * into the Maildir, before any 250. */
#ifndef MX_SPOOL_H
#define MX_SPOOL_H

/* A new spool: in memory when memmax > 0 (and memfd works), else an
 * unlinked file in dir. -1 with errno on failure. */
int spool_new(const char *dir, long long memmax);

/* Move a memory spool to an unlinked file in dir, keeping the
 * descriptor number and its offset (writes go on where they were).
 * 0, or -1 with errno (fd is then unchanged). */
int spool_spill(int fd, const char *dir);
#endif
