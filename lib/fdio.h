/* fdio: write a whole buffer to a file descriptor; tell whether a
 * file is still the one seen before. */
#ifndef MX_FDIO_H
#define MX_FDIO_H
#include <stddef.h>
#include <sys/stat.h>

/* Write all n bytes (retrying EINTR and short writes). 0, or -1 with
 * errno set (EIO if write returned 0). */
int fd_write_all(int fd, const void *p, size_t n);
/* Same device, inode, size and modification time: the same file,
 * unchanged (how long-lived processes notice an edit or a rename). */
int stat_same(const struct stat *a, const struct stat *b);
#endif
