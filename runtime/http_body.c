/* http_body.c: see http_body.h. One byte at a time through the framing (chunk-size lines,
 * extensions, CRLFs, trailers), a whole run at a time through the data. */
#include "http_body.h"
#include "http_head.h"

enum {
  BS_LENGTH,                   /* Content-Length: data until size is 0 */
  BS_SIZE0, BS_SIZE, BS_BWS_SEMI, BS_EXT_NAME0, BS_EXT_NAME, BS_EXT_AFTER_NAME, BS_EXT_VAL0,
  BS_EXT_TOKEN, BS_EXT_QUOTED, BS_EXT_QP, BS_EXT_AFTER_QUOTE, BS_SIZE_LF,
  BS_DATA, BS_DATA_CR, BS_DATA_LF,
  BS_TR_LINE0, BS_TR_NAME, BS_TR_VALUE, BS_TR_CL_OWS, BS_TR_CL_DIGITS, BS_TR_LF,
  BS_END_LF, BS_DONE,
  BS_CLOSE,                    /* a response body that ends at the close: data until then */
};

#define MAX_CHUNK_LINE 4096    /* a chunk-size line with its extensions */

#define is_tchar(c) (lc_http_tchar[(unsigned char)(c)])

static const char CL_NAME[] = "content-length";
#define CL_NAME_LEN 14

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int lc_http_body_init(lc_http_body *b, int chunked, uint64_t length, uint64_t max_body) {
  b->digits = 0;
  b->size = 0;
  b->total = 0;
  b->line = 0;
  b->name_match = 0;
  b->lengths = 0;
  if (chunked) {
    b->state = BS_SIZE0;
    return LC_HTTP_BODY_MORE;
  }
  if (length > max_body) return 413;
  b->size = length;
  b->state = length > 0 ? BS_LENGTH : BS_DONE;
  return length > 0 ? LC_HTTP_BODY_MORE : LC_HTTP_BODY_DONE;
}

void lc_http_body_init_close(lc_http_body *b) {
  lc_http_body_init(b, 0, 0, 0);
  b->state = BS_CLOSE;
}

int lc_http_body_frame(lc_http_body *b, const char *p, size_t n, uint64_t max_body,
                       size_t max_trailers, size_t *used, size_t *data_off, size_t *data_len) {
  size_t i = 0;
  *used = 0;
  *data_off = 0;
  *data_len = 0;
  if (b->state == BS_DONE) return LC_HTTP_BODY_DONE;
  if (b->state == BS_CLOSE) {
    if (b->total > max_body || n > max_body - b->total) return 413;
    b->total += n;
    *data_len = n;
    *used = n;
    return LC_HTTP_BODY_MORE;
  }
  if (b->state == BS_LENGTH) {
    size_t k = n;
    if (k > b->size) k = (size_t)b->size;
    b->size -= k;
    b->total += k;
    *data_len = k;
    *used = k;
    if (b->size > 0) return LC_HTTP_BODY_MORE;
    b->state = BS_DONE;
    return LC_HTTP_BODY_DONE;
  }
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    int ws = c == ' ' || c == '\t';
    if (b->state <= BS_SIZE_LF && ++b->line > MAX_CHUNK_LINE) return 400;
    switch (b->state) {
      case BS_SIZE0:
      case BS_SIZE: {
        int d = hexval(c);
        if (d >= 0) {
          if (b->digits > 0 || d > 0) b->digits++;
          if (b->digits > 16) return 400;               /* does not fit 64 bits */
          b->size = b->size * 16 + (uint64_t)d;
          b->state = BS_SIZE;
          break;
        }
        if (b->state == BS_SIZE0) return 400;
        if (b->size > max_body || b->total + b->size > max_body) return 413;
        if (ws) b->state = BS_BWS_SEMI;
        else if (c == ';') b->state = BS_EXT_NAME0;
        else if (c == '\r') b->state = BS_SIZE_LF;
        else return 400;
        break;
      }
      case BS_BWS_SEMI:
        if (c == ';') b->state = BS_EXT_NAME0;
        else if (!ws) return 400;
        break;
      case BS_EXT_NAME0:
        if (is_tchar(c)) b->state = BS_EXT_NAME;
        else if (!ws) return 400;
        break;
      case BS_EXT_NAME:
        if (is_tchar(c)) break;
        if (ws) b->state = BS_EXT_AFTER_NAME;
        else if (c == '=') b->state = BS_EXT_VAL0;
        else if (c == ';') b->state = BS_EXT_NAME0;
        else if (c == '\r') b->state = BS_SIZE_LF;
        else return 400;
        break;
      case BS_EXT_AFTER_NAME:
        if (c == '=') b->state = BS_EXT_VAL0;
        else if (c == ';') b->state = BS_EXT_NAME0;
        else if (!ws) return 400;
        break;
      case BS_EXT_VAL0:
        if (is_tchar(c)) b->state = BS_EXT_TOKEN;
        else if (c == '"') b->state = BS_EXT_QUOTED;
        else if (!ws) return 400;
        break;
      case BS_EXT_TOKEN:
        if (is_tchar(c)) break;
        if (ws) b->state = BS_BWS_SEMI;
        else if (c == ';') b->state = BS_EXT_NAME0;
        else if (c == '\r') b->state = BS_SIZE_LF;
        else return 400;
        break;
      case BS_EXT_QUOTED:
        if (c == '"') b->state = BS_EXT_AFTER_QUOTE;
        else if (c == '\\') b->state = BS_EXT_QP;
        else if (!(ws || (c >= 0x21 && c != 0x7f))) return 400;
        break;
      case BS_EXT_QP:
        if (!(ws || (c >= 0x21 && c != 0x7f))) return 400;
        b->state = BS_EXT_QUOTED;
        break;
      case BS_EXT_AFTER_QUOTE:
        if (ws) b->state = BS_BWS_SEMI;
        else if (c == ';') b->state = BS_EXT_NAME0;
        else if (c == '\r') b->state = BS_SIZE_LF;
        else return 400;
        break;
      case BS_SIZE_LF:
        if (c != '\n') return 400;
        b->line = 0;
        b->state = b->size == 0 ? BS_TR_LINE0 : BS_DATA;
        break;
      case BS_DATA: {
        if (*data_len > 0) {  /* one run of data per call: the caller takes this one first */
          *used = i;
          return LC_HTTP_BODY_MORE;
        }
        size_t k = n - i;
        if (k > b->size) k = (size_t)b->size;
        *data_off = i;
        *data_len = k;
        b->size -= k;
        b->total += k;
        i += k;
        if (b->size == 0) b->state = BS_DATA_CR;
        continue;
      }
      case BS_DATA_CR:
        if (c != '\r') return 400;
        b->state = BS_DATA_LF;
        break;
      case BS_DATA_LF:
        if (c != '\n') return 400;
        b->state = BS_SIZE0;
        b->digits = 0;
        b->size = 0;
        b->line = 0;
        break;
      /* trailer fields: the head's field rules (http_head.c): a token, ':' with nothing
       * before it, a value without control bytes but HTAB; no obs-fold, CRLF only */
      case BS_TR_LINE0:
        b->name_match = 0;
        if (c == '\r') { b->state = BS_END_LF; break; }
        if (!is_tchar(c)) return 400;
        b->state = BS_TR_NAME;
        /* the name's first byte: */
        /* fall through */
      case BS_TR_NAME: {
        if (c == ':') {
          /* a Content-Length trailer is not framing (RFC 9110 6.5.1), but it is held to the
           * head's rule: digits, once */
          if (b->name_match == CL_NAME_LEN) {
            if (++b->lengths > 1) return 400;
            b->digits = 0;
            b->state = BS_TR_CL_OWS;
          } else {
            b->state = BS_TR_VALUE;
          }
          break;
        }
        if (!is_tchar(c)) return 400;
        unsigned char lc = c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
        b->name_match = b->name_match >= 0 && b->name_match < CL_NAME_LEN && CL_NAME[b->name_match] == lc
                      ? b->name_match + 1 : -1;
        break;
      }
      case BS_TR_VALUE:
        if (c == '\r') b->state = BS_TR_LF;
        else if ((c < 0x20 && c != '\t') || c == 0x7f) return 400;
        break;
      case BS_TR_CL_OWS:
      case BS_TR_CL_DIGITS:
        if (c >= '0' && c <= '9') {
          if (b->state == BS_TR_CL_OWS && b->digits > 0) return 400;  /* "5 5" */
          if (++b->digits > 18) return 400;
          b->state = BS_TR_CL_DIGITS;
        } else if (ws) {
          if (b->state == BS_TR_CL_DIGITS) b->state = BS_TR_CL_OWS;
        } else if (c == '\r' && b->digits > 0) {
          b->state = BS_TR_LF;
        } else {
          return 400;
        }
        break;
      case BS_TR_LF:
        if (c != '\n') return 400;
        b->state = BS_TR_LINE0;
        break;
      case BS_END_LF:
        if (c != '\n') return 400;
        b->state = BS_DONE;
        *used = i + 1;
        return LC_HTTP_BODY_DONE;
    }
    if (b->state >= BS_TR_LINE0 && ++b->line > max_trailers) return 431;
    i++;
  }
  *used = n;
  return LC_HTTP_BODY_MORE;
}
