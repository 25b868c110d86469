#ifndef MAILGATE_CBYTESEARCH_H
#define MAILGATE_CBYTESEARCH_H
#include <stddef.h>

/// glibc's memmem (a GNU extension, which Swift's Glibc module does not offer): where the
/// `needle_len` octets at `needle` first occur in the `haystack_len` octets at `haystack`.
const void *mailgate_memmem(const void *haystack, size_t haystack_len, const void *needle, size_t needle_len);

#endif
