/*
 * fastscan.c -- see fastscan.h. Every branch that is not plainly valid JSON
 * of the accepted subset returns 0 (defer).
 */
#include "fastscan.h"

#include <string.h>

#define MAX_MEMBERS 8
#define MAX_DIGITS 18 /* < 2^63: no overflow to think about */

enum { V_STRING, V_INT, V_LITERAL };

typedef struct cursor {
        const char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c) {
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
                c->p++;
}

/* A string of printable ASCII with no escape. @returns 0 to defer. */
static int scan_string(cursor_t *c, const char **s, size_t *n) {
        if (c->p >= c->end || *c->p != '"')
                return 0;
        const char *start = ++c->p;
        while (c->p < c->end) {
                unsigned char ch = (unsigned char)*c->p;
                if (ch == '"') {
                        *s = start;
                        *n = (size_t)(c->p - start);
                        c->p++;
                        return 1;
                }
                if (ch < 0x20 || ch > 0x7e || ch == '\\')
                        return 0;
                c->p++;
        }
        return 0;
}

/* A non-negative integer without leading zeros, sign, fraction or exponent. */
static int scan_int(cursor_t *c, int64_t *v) {
        const char *start = c->p;
        int64_t x = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
                if (c->p - start < MAX_DIGITS) /* never overflows; longer ones defer */
                        x = x * 10 + (*c->p - '0');
                c->p++;
        }
        size_t digits = (size_t)(c->p - start);
        if (!digits || digits > MAX_DIGITS || (digits > 1 && *start == '0'))
                return 0;
        if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
                return 0;
        *v = x;
        return 1;
}

static int scan_literal(cursor_t *c) {
        static const char *const lits[] = {"true", "false", "null"};
        for (int i = 0; i < 3; i++) {
                size_t n = strlen(lits[i]);
                if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, lits[i], n)) {
                        c->p += n;
                        return 1;
                }
        }
        return 0;
}

int sales_fastscan(const char *p, size_t len, size_t key_max, sales_fields_t *out) {
        cursor_t c = {p, p + len};
        struct {
                const char *s;
                size_t n;
        } keys[MAX_MEMBERS];
        int nkeys = 0, have = 0; /* have: bit 0 seller_id, 1 amount_usd, 2 sale_ts */
        skip_ws(&c);
        if (c.p >= c.end || *c.p != '{')
                return 0;
        c.p++;
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}')
                return 0; /* empty object: fields missing, let jansson say so */
        for (;;) {
                const char *k;
                size_t kn;
                skip_ws(&c);
                if (!scan_string(&c, &k, &kn) || nkeys == MAX_MEMBERS)
                        return 0;
                for (int i = 0; i < nkeys; i++)
                        if (keys[i].n == kn && !memcmp(keys[i].s, k, kn))
                                return 0; /* duplicate key */
                keys[nkeys].s = k;
                keys[nkeys++].n = kn;
                skip_ws(&c);
                if (c.p >= c.end || *c.p != ':')
                        return 0;
                c.p++;
                skip_ws(&c);
                if (c.p >= c.end)
                        return 0;
                int type;
                const char *s = NULL;
                size_t sn = 0;
                int64_t iv = 0;
                if (*c.p == '"') {
                        if (!scan_string(&c, &s, &sn))
                                return 0;
                        type = V_STRING;
                } else if (*c.p >= '0' && *c.p <= '9') {
                        if (!scan_int(&c, &iv))
                                return 0;
                        type = V_INT;
                } else {
                        if (!scan_literal(&c))
                                return 0;
                        type = V_LITERAL;
                }
                if (kn == 9 && !memcmp(k, "seller_id", 9)) {
                        if (type != V_STRING || !sn || sn > key_max)
                                return 0;
                        out->key = s;
                        out->key_len = sn;
                        have |= 1;
                } else if (kn == 10 && !memcmp(k, "amount_usd", 10)) {
                        if (type != V_INT)
                                return 0;
                        out->amount = iv;
                        have |= 2;
                } else if (kn == 7 && !memcmp(k, "sale_ts", 7)) {
                        if (type != V_INT)
                                return 0;
                        out->ts = iv;
                        have |= 4;
                }
                skip_ws(&c);
                if (c.p >= c.end)
                        return 0;
                if (*c.p == ',') {
                        c.p++;
                        continue;
                }
                if (*c.p != '}')
                        return 0;
                c.p++;
                break;
        }
        skip_ws(&c);
        return c.p == c.end && have == 7;
}
