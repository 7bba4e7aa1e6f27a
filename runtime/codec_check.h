/* codec_check.h: the bounds check of an encoded value before it is decoded (codec_check.c). */
#ifndef LC_CODEC_CHECK_H
#define LC_CODEC_CHECK_H

#include <stddef.h>

const char *lc_codec_check(const char *p, size_t len);  /* NULL: one complete, bounded value */

#endif
