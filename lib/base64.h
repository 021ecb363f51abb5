/* base64 (RFC 4648): one alphabet for the MIME decoder of the rules and
 * SMTP AUTH. */
#ifndef MX_BASE64_H
#define MX_BASE64_H
#include <stddef.h>

/* The value of a base64 alphabet character, or -1 (also for '='). */
int b64_value(int c);

/* Strict decoding (padding required, no blanks): the decoded length, or
 * -1 for bad input or more than cap bytes. */
long b64_decode(const char *in, size_t inlen, char *out, size_t cap);
#endif
