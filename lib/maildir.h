/* maildir: writing into Maildirs the way maildir(5) says, durably.
 *
 * A Maildir is opened relative to the mail root's directory fd from a
 * path that maildir_path_ok() accepted (never from an address), plus an
 * optional Maildir++ folder (".Name"). A message is written once into
 * one Maildir's tmp/ (unique name, O_CREAT|O_EXCL, every write checked,
 * fsync, close) and then hard-linked into the new/ of every Maildir that
 * gets it; after the links each new/ is fsynced. A file in new/ is
 * therefore always complete. Leftovers in tmp/ older than 36 hours are
 * removed (maildir_clean_tmp).
 *
 * File names: tmp/TIME.MusecPpidQn.HOST, new/TIME.MusecPpidQn.HOST,S=SIZE
 * (",S=" is the exact file size, which Dovecot and Courier use). In HOST,
 * '/' ':' ',' are written \057 \072 \054. */
#ifndef MX_MAILDIR_H
#define MX_MAILDIR_H
#include <stddef.h>
#include <sys/types.h>

#define MAILDIR_NAME_MAX 300
#define MAILDIR_FOLDER_MAX 200
#define MAILDIR_TMP_MAXAGE (36 * 3600)

struct maildir {
	int fd;			/* the Maildir (or folder) directory */
	int tmpfd, newfd;	/* its tmp/ and new/ */
	dev_t dev;		/* of tmp/, to know when a link can work */
	ino_t tmpino;		/* of tmp/: which tmp/ was cleaned when */
	char name[1300];	/* "path" or "path/.Folder", for logs */
};

/* Open ROOTFD/path[/.folder]. folder is NULL or a name already
 * normalised by maildir_folder_name(). With create, missing
 * directories (the path's parents too) are made mode 0700, and a new
 * folder gets its "maildirfolder" file. Returns 0, or -1 with errno
 * set and a short reason in err. */
int maildir_open(struct maildir *m, int rootfd, const char *path,
    const char *folder, int create, char *err, size_t errlen);
void maildir_close(struct maildir *m);

/* Normalise a folder name for Maildir++: "Work/Projects" or
 * ".Work.Projects" -> "Work.Projects"; "" or "INBOX" -> "" (no folder).
 * Letters, digits, space and "_+-&" in components, no empty component.
 * Returns 0 ok, -1 not acceptable. */
int maildir_folder_name(const char *in, char *out, size_t outlen);

/* A unique file name base (no ",S="), TIME.MusecPpidQn.HOST. */
void maildir_uniq(char *dst, size_t len, const char *host);

/* Create a new file in m's tmp/ (mode 0600, O_EXCL; a few tries with
 * fresh names). Returns the fd (O_RDWR) and the name, or -1. */
int maildir_tmp_create(struct maildir *m, const char *host, char *name, size_t namelen);

/* The file for a delivery: unnamed in m's tmp/ (O_TMPFILE) where the
 * kernel and filesystem can, then name is "/proc/self/fd/N" and the fd
 * must stay open until it is linked; else a named one, as
 * maildir_tmp_create. Unnamed, nothing is ever left in tmp/, and the
 * file's fsync need not also write tmp/'s new entry (ext4 does without
 * a journal) nor the entry be removed afterwards: about 0.2 ms less a
 * delivery on the bench VM (doc/PERFORMANCE.md). */
int maildir_tmp_open(struct maildir *m, const char *host, char *name, size_t namelen);
int maildir_tmp_unnamed(const char *name);
/* Done with a tmp file (linked or failed): unlink a named one, close fd
 * (-1: already closed). */
void maildir_tmp_drop(struct maildir *m, const char *name, int fd);

/* Publish: link src's tmp/TMPNAME (or an unnamed file) into dst's new/ as a fresh unique
 * name with ",S=size". Never overwrites (a clash picks another name).
 * Returns 0 (the new name in newname) or -1 with errno (EXDEV: other
 * filesystem, copy instead). The caller fsyncs dst's new/ afterwards. */
int maildir_link(struct maildir *src, const char *tmpname, struct maildir *dst,
    const char *host, off_t size, char *newname, size_t newlen);

/* fsync the new/ directory. 0 or -1. */
int maildir_sync_new(struct maildir *m);

/* Remove files in tmp/ not modified for maxage seconds. Returns how
 * many were removed (errors are ignored: this is housekeeping). */
int maildir_clean_tmp(struct maildir *m, long maxage);

#endif
