/*
 * json.c -- see json.h. String escaping is done one input "unit" at a time
 * (an ASCII byte, a well-formed UTF-8 sequence, or one stray byte), so the
 * fixed-buffer and the growable-buffer writers share exactly the same rules
 * and both stop only between units.
 */
#include "json.h"

#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- escaping -------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0 when s[0] does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t len) {
        unsigned char c = s[0];
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF)
                n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                n = 3;
                if (c == 0xE0)
                        lo = 0xA0;
                else if (c == 0xED)
                        hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
                n = 4;
                if (c == 0xF0)
                        lo = 0x90;
                else if (c == 0xF4)
                        hi = 0x8F;
        } else
                return 0;
        if (len < n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xBF)
                        return 0;
        return n;
}

/* Escape the unit at s[0..len) into out (>= 6 bytes). @returns the bytes of
 * output; *used gets the input bytes consumed (>= 1). */
static size_t escape_unit(const char *s, size_t len, char out[6], size_t *used) {
        static const char hex[] = "0123456789abcdef";
        unsigned char c = (unsigned char)s[0];
        *used = 1;
        if (c == '"' || c == '\\') {
                out[0] = '\\';
                out[1] = (char)c;
                return 2;
        }
        if (c < 0x20 || c == 0x7F) {
                const char *shortform = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                                      : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
                if (shortform) {
                        memcpy(out, shortform, 2);
                        return 2;
                }
                memcpy(out, "\\u00", 4);
                out[4] = hex[c >> 4];
                out[5] = hex[c & 15];
                return 6;
        }
        if (c < 0x80) {
                out[0] = (char)c;
                return 1;
        }
        size_t n = utf8_seq((const unsigned char *)s, len);
        if (!n) {
                memcpy(out, "\\ufffd", 6); /* a stray byte: the replacement character */
                return 6;
        }
        memcpy(out, s, n);
        *used = n;
        return n;
}

size_t rill_json_string(const char *s, size_t len, char *buf, size_t size) {
        size_t n = 0;
        if (size < 3) {
                if (size)
                        buf[0] = '\0';
                return 0;
        }
        buf[n++] = '"';
        for (size_t i = 0; i < len;) {
                char u[6];
                size_t used, k = escape_unit(s + i, len - i, u, &used);
                if (n + k + 2 > size) { /* room for the closing quote and the NUL */
                        buf[0] = '\0';
                        return 0;
                }
                memcpy(buf + n, u, k);
                n += k;
                i += used;
        }
        buf[n++] = '"';
        buf[n] = '\0';
        return n;
}

/* ---- the growable buffer --------------------------------------------------------- */

void rill_jbuf_init(rill_jbuf_t *b, size_t limit) {
        memset(b, 0, sizeof(*b));
        b->limit = limit;
}

void rill_jbuf_free(rill_jbuf_t *b) {
        free(b->p);
        memset(b, 0, sizeof(*b));
}

void rill_jbuf_reset(rill_jbuf_t *b) {
        b->len = 0;
        b->failed = 0;
        if (b->p)
                b->p[0] = '\0';
}

/* Make room for n more bytes plus the NUL. */
static int reserve(rill_jbuf_t *b, size_t n) {
        if (b->failed)
                return -1;
        if (n > b->limit || b->len > b->limit - n) {
                b->failed = 1;
                return -1;
        }
        if (b->len + n + 1 <= b->size)
                return 0;
        size_t size = b->size ? b->size : 256;
        while (size < b->len + n + 1)
                size *= 2;
        char *p = realloc(b->p, size);
        if (!p) {
                b->failed = 1;
                return -1;
        }
        b->p = p;
        b->size = size;
        return 0;
}

int rill_jbuf_add(rill_jbuf_t *b, const char *s, size_t n) {
        if (reserve(b, n))
                return -1;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
        return 0;
}

int rill_jbuf_printf(rill_jbuf_t *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || reserve(b, (size_t)n)) {
                b->failed = 1;
                return -1;
        }
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
}

int rill_jbuf_string(rill_jbuf_t *b, const char *s, size_t len) {
        if (rill_jbuf_add(b, "\"", 1))
                return -1;
        for (size_t i = 0; i < len;) {
                char u[6];
                size_t used, k = escape_unit(s + i, len - i, u, &used);
                if (rill_jbuf_add(b, u, k))
                        return -1;
                i += used;
        }
        return rill_jbuf_add(b, "\"", 1);
}

/* ---- the /query answer ----------------------------------------------------------- */

static int error_body(rill_jbuf_t *b, int status, const char *msg) {
        rill_jbuf_reset(b);
        rill_jbuf_add(b, "{\"error\":", 9);
        rill_jbuf_string(b, msg, strlen(msg));
        rill_jbuf_add(b, "}\n", 2);
        return status;
}

int rill_query_answer(const char *key, size_t key_len, const char *instance,
                      rill_query_lookup_fn lookup, void *opaque, rill_jbuf_t *body) {
        char msg[256], errstr[512] = "";
        if (!key || !key_len)
                return error_body(body, 400, "give the key as /query?key=<key> (URL-encoded, "
                                             "at most 1024 bytes)");
        if (key_len > RILL_QUERY_KEY_MAX) {
                snprintf(msg, sizeof(msg),
                         "key too long: %zu bytes, at most %d (keys longer than that are never "
                         "stored)", key_len, RILL_QUERY_KEY_MAX);
                return error_body(body, 400, msg);
        }
        rill_qwindow_t *v = malloc(RILL_QUERY_WINDOWS_MAX * sizeof(*v));
        if (!v)
                return error_body(body, 500, "out of memory");
        rill_qresult_t res = {v, 0, RILL_QUERY_WINDOWS_MAX, 0};
        if (lookup(opaque, key, key_len, &res, errstr, sizeof(errstr))) {
                free(v);
                return error_body(body, 500, "state store read failed (the worker's log has the "
                                             "details: event query_failed)");
        }
        if (res.cnt > res.max) /* a lookup that ignored max: keep what fits the contract */
                res.cnt = res.max, res.truncated = 1;
        rill_jbuf_reset(body);
        rill_jbuf_add(body, "{\"key\":", 7);
        rill_jbuf_string(body, key, key_len);
        rill_jbuf_add(body, ",\"instance\":", 12);
        rill_jbuf_string(body, instance ? instance : "", instance ? strlen(instance) : 0);
        rill_jbuf_add(body, ",\"windows\":[", 12);
        for (size_t i = 0; i < res.cnt; i++) {
                rill_jbuf_printf(body,
                                 "%s{\"partition\":%d,\"window_start_ms\":%lld,\"window_end_ms\":%lld",
                                 i ? "," : "", (int)v[i].partition, (long long)v[i].start_ms,
                                 (long long)v[i].end_ms);
                int nf = v[i].nfigures < 0 ? 0
                         : v[i].nfigures > RILL_QUERY_FIGURES_MAX ? RILL_QUERY_FIGURES_MAX
                                                                  : v[i].nfigures;
                for (int k = 0; k < nf; k++) {
                        const rill_qfigure_t *f = &v[i].f[k];
                        rill_jbuf_add(body, ",", 1);
                        rill_jbuf_string(body, f->name ? f->name : "", f->name ? strlen(f->name) : 0);
                        double d = f->d;
                        if (!f->is_double)
                                rill_jbuf_printf(body, ":%lld", (long long)f->i);
                        else if (isfinite(d))
                                rill_jbuf_printf(body, ":%.17g", d);
                        else
                                rill_jbuf_add(body, ":null", 5);
                }
                rill_jbuf_add(body, "}", 1);
        }
        rill_jbuf_printf(body, "],\"truncated\":%s}\n", res.truncated ? "true" : "false");
        size_t found = res.cnt;
        free(v);
        if (body->failed)
                return error_body(body, 500, "query answer too large or out of memory");
        return found ? 200 : 404;
}
