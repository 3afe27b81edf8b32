/* libFuzzer target: the /query answer (rill_query_answer, base/json.c),
 * the function the HTTP handler calls, fed with a fake store.
 *
 * Input: byte 0 chooses the fake store's behaviour (bit 0: the lookup fails;
 * bits 1-7: windows found, x 9 so that RILL_QUERY_WINDOWS_MAX is passed),
 * byte 1 the length of the instance name, then the instance name, then the
 * key (any bytes, any length). Checked on every input: the body is valid
 * JSON (jansson, strict UTF-8) ending in a newline, within the size cap; the
 * status matches the key and the store; a well-formed UTF-8 key comes back
 * exactly; the windows are the store's, in order, capped and flagged.
 *
 * The same bytes also go through the parsers of query forwarding
 * (engine/peer.c): the HTTP response splitter (status 100..599, the body
 * inside the input), the endpoint advertised in a client.id (a valid host
 * and port, and what rill_peer_advertise writes parses back the same) and
 * the key's percent-encoding (only unreserved bytes and %XX, decoding back
 * to the key).
 */
#include "json.h"
#include "peer.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                              \
        do {                                                                                  \
                if (!(c)) {                                                                   \
                        fprintf(stderr, "fuzz_query: check failed: %s (line %d)\n", #c, __LINE__); \
                        abort();                                                              \
                }                                                                             \
        } while (0)

typedef struct fake {
        const uint8_t *seed;
        size_t seed_len, windows;
        int fail, calls;
} fake_t;

static int64_t value_at(const fake_t *f, size_t i, int k) {
        static const int64_t edge[] = {0, -1, 1, INT64_MIN, INT64_MAX, 60000, -60000, 1700000000000};
        uint8_t b = f->seed_len ? f->seed[(i * 5 + (size_t)k) % f->seed_len] : 0;
        int64_t v = edge[b & 7], d = b >> 3; /* toward zero: never overflows */
        return v < 0 ? v + d : v - d;
}

static int lookup(void *opaque, const char *key, size_t key_len, rill_qresult_t *res,
                  char *errstr, size_t errstr_size) {
        fake_t *f = opaque;
        (void)key, (void)key_len;
        f->calls++;
        if (f->fail) {
                snprintf(errstr, errstr_size, "fake store error \"%.*s\"", (int)key_len, key);
                return -1;
        }
        for (size_t i = 0; i < f->windows; i++) {
                if (res->cnt >= res->max) {
                        res->truncated = 1;
                        break;
                }
                res->v[res->cnt++] = (rill_qwindow_t){
                    (int32_t)value_at(f, i, 0), value_at(f, i, 1), value_at(f, i, 2), 3,
                    {{"sum", 0, value_at(f, i, 3), 0}, {"count", 0, value_at(f, i, 4), 0},
                     {"avg", 1, 0, (double)value_at(f, i, 3) / 7.0}}};
        }
        return 0;
}

/* Is s[0..n) well-formed UTF-8? (jansson's own check, through a string) */
static int utf8_ok(const char *s, size_t n) {
        json_t *j = json_stringn(s, n);
        json_decref(j);
        return j != NULL;
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int host_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '-' || c == '_' || c == ':';
}

/* the forwarding parsers (engine/peer.c) on the raw input */
static void fuzz_peer(const uint8_t *data, size_t size) {
        int status = 0;
        size_t off = 0;
        if (!rill_peer_parse_response((const char *)data, size, &status, &off))
                CHECK(status >= 100 && status <= 599 && off >= 16 && off <= size &&
                      !memcmp(data + off - 4, "\r\n\r\n", 4));
        /* the client.id and the broker's host: split at the first NUL */
        char *cid = malloc(size + 1);
        memcpy(cid, data, size);
        cid[size] = '\0';
        const char *bhost = memchr(cid, '\0', size) ? cid + strlen(cid) + 1 : NULL;
        char host[RILL_PEER_HOST_MAX];
        int port = 0;
        if (!rill_peer_endpoint(cid, bhost, host, sizeof(host), &port)) {
                size_t n = strlen(host);
                CHECK(port >= 1 && port <= 65535 && n > 0 && n < RILL_PEER_HOST_MAX);
                for (size_t i = 0; i < n; i++)
                        CHECK(host_char_ok(host[i]));
                char adv[1024], h2[RILL_PEER_HOST_MAX];
                int p2 = 0;
                if (!rill_peer_advertise(adv, sizeof(adv), "app-p-0", host, port)) {
                        CHECK(!rill_peer_endpoint(adv, NULL, h2, sizeof(h2), &p2));
                        CHECK(p2 == port && !strcmp(h2, host));
                }
        }
        free(cid);
        rill_jbuf_t u;
        rill_jbuf_init(&u, 3 * size + 16);
        CHECK(rill_peer_urlencode(&u, (const char *)data, size) == 0 && u.len >= size);
        size_t k = 0;
        for (size_t i = 0; i < u.len; k++) {
                unsigned char c;
                if (u.p[i] == '%') {
                        CHECK(i + 3 <= u.len);
                        int hi = hexval(u.p[i + 1]), lo = hexval(u.p[i + 2]);
                        CHECK(hi >= 0 && lo >= 0);
                        c = (unsigned char)(hi * 16 + lo);
                        i += 3;
                } else {
                        c = (unsigned char)u.p[i++];
                        CHECK(c == '~' || (host_char_ok((char)c) && c != ':')); /* unreserved */
                }
                CHECK(k < size && c == data[k]);
        }
        CHECK(k == size);
        rill_jbuf_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_peer(data, size);
        if (size < 2)
                return 0;
        fake_t f = {data, size, (size_t)(data[0] >> 1) * 9, data[0] & 1, 0};
        size_t ilen = data[1];
        if (ilen > size - 2)
                ilen = size - 2;
        char *instance = malloc(ilen + 1);
        memcpy(instance, data + 2, ilen);
        instance[ilen] = '\0'; /* a C string: stops at a NUL inside, as process_id would */
        const char *key = (const char *)data + 2 + ilen;
        size_t key_len = size - 2 - ilen;

        rill_jbuf_t b;
        rill_jbuf_init(&b, RILL_QUERY_BODY_MAX);
        int status = rill_query_answer(key, key_len, instance, lookup, &f, &b);

        CHECK(!b.failed);
        CHECK(b.len > 0 && b.len <= RILL_QUERY_BODY_MAX && b.p[b.len - 1] == '\n');
        CHECK(strlen(b.p) == b.len); /* escaped: no raw NUL in the body */
        json_error_t e;
        json_t *j = json_loadb(b.p, b.len, JSON_ALLOW_NUL, &e);
        if (!j) {
                fprintf(stderr, "fuzz_query: body is not JSON: %s at %d\n", e.text, e.position);
                abort();
        }
        CHECK(json_is_object(j));
        if (key_len == 0 || key_len > RILL_QUERY_KEY_MAX) {
                CHECK(status == 400 && f.calls == 0);
                CHECK(json_is_string(json_object_get(j, "error")));
        } else if (f.fail) {
                CHECK(status == 500 && json_is_string(json_object_get(j, "error")));
                CHECK(!strstr(b.p, "fake store error")); /* details stay in the log */
        } else {
                size_t want = f.windows < RILL_QUERY_WINDOWS_MAX ? f.windows : RILL_QUERY_WINDOWS_MAX;
                CHECK(status == (want ? 200 : 404));
                json_t *k = json_object_get(j, "key"), *ws = json_object_get(j, "windows");
                CHECK(json_is_string(k) && json_is_array(ws));
                if (utf8_ok(key, key_len))
                        CHECK(json_string_length(k) == key_len &&
                              !memcmp(json_string_value(k), key, key_len));
                if (utf8_ok(instance, strlen(instance)))
                        CHECK(!strcmp(json_string_value(json_object_get(j, "instance")), instance));
                CHECK(json_array_size(ws) == want);
                CHECK(json_is_true(json_object_get(j, "truncated")) == (f.windows > want));
                for (size_t i = 0; i < want; i++) {
                        json_t *w = json_array_get(ws, i);
                        CHECK(json_integer_value(json_object_get(w, "partition")) ==
                              (int32_t)value_at(&f, i, 0));
                        CHECK(json_integer_value(json_object_get(w, "window_start_ms")) == value_at(&f, i, 1));
                        CHECK(json_integer_value(json_object_get(w, "window_end_ms")) == value_at(&f, i, 2));
                        CHECK(json_integer_value(json_object_get(w, "sum")) == value_at(&f, i, 3));
                        CHECK(json_integer_value(json_object_get(w, "count")) == value_at(&f, i, 4));
                }
        }
        json_decref(j);

        /* the fixed-buffer writer agrees with the growable one, and never
         * leaves a partial literal when the buffer is short */
        size_t cap = RILL_JSON_STRING_MAX(key_len);
        char *lit = malloc(cap);
        size_t n = rill_json_string(key, key_len, lit, cap);
        rill_jbuf_t s;
        rill_jbuf_init(&s, cap);
        CHECK(rill_jbuf_string(&s, key, key_len) == 0);
        CHECK(n == s.len && !memcmp(lit, s.p, n) && lit[n] == '\0');
        size_t short_size = n / 2 + 1;
        CHECK(rill_json_string(key, key_len, lit, short_size) == 0 && lit[0] == '\0');
        rill_jbuf_free(&s);
        free(lit);
        rill_jbuf_free(&b);
        free(instance);
        return 0;
}
