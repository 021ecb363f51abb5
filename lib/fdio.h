/* fdio: write a whole buffer to a file descriptor. */
#ifndef MX_FDIO_H
#define MX_FDIO_H
#include <stddef.h>

/* Write all n bytes (retrying EINTR and short writes). 0, or -1 with
 * errno set (EIO if write returned 0). */
int fd_write_all(int fd, const void *p, size_t n);
#endif
