/* Unit tests: JSON string literals and the /query answer body with
 * worst-case keys (every byte a control character, stray UTF-8 bytes, the
 * longest key), a hostile instance name and more windows than an answer
 * holds. Every body must parse with jansson (strict: valid UTF-8) and carry
 * exactly what was given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

/* ---- rill_json_string ------------------------------------------------------------ */

/* The review's case: 1,024 control characters need 6,146 bytes; the old
 * /query buffer had 2,200 and got no terminator, so the answer carried stack
 * contents. On overflow the buffer must hold "", never a partial literal. */
static void string_too_long_for_buffer_is_empty_and_terminated(void **s) {
        (void)s;
        char key[1024], buf[2200];
        memset(key, 0x01, sizeof(key));
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(rill_json_string(key, sizeof(key), buf, sizeof(buf)), 0);
        assert_string_equal(buf, "");
        memset(buf, 'X', sizeof(buf));
        assert_int_equal(rill_json_string("ab", 2, buf, 2), 0);
        assert_int_equal(buf[0], '\0');
}

static void string_worst_case_fits_its_max(void **s) {
        (void)s;
        char key[1024];
        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (char)(i % 32);
        size_t size = RILL_JSON_STRING_MAX(sizeof(key));
        char *buf = malloc(size);
        size_t n = rill_json_string(key, sizeof(key), buf, size);
        assert_true(n > 0 && n < size);
        assert_int_equal(strlen(buf), n);
        json_error_t e;
        json_t *j = json_loadb(buf, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        assert_non_null(j);
        assert_int_equal(json_string_length(j), sizeof(key));
        assert_memory_equal(json_string_value(j), key, sizeof(key));
        json_decref(j);
        /* exactly fitting: n + 1 bytes works, n does not */
        assert_int_equal(rill_json_string(key, sizeof(key), buf, n + 1), n);
        assert_int_equal(rill_json_string(key, sizeof(key), buf, n), 0);
        free(buf);
}

static void string_escapes(void **s) {
        (void)s;
        char buf[128];
        const char in[] = "a\"b\\c\n\t\x01\x7f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
        rill_json_string(in, sizeof(in) - 1, buf, sizeof(buf));
        assert_string_equal(buf, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
        /* stray bytes, overlong forms, surrogates, truncated sequences: U+FFFD each */
        const char bad[] = "\xff\xc0\xaf\xed\xa0\x80\xe2\x82";
        rill_json_string(bad, sizeof(bad) - 1, buf, sizeof(buf));
        assert_string_equal(buf, "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
        assert_int_equal(rill_json_string("\0", 1, buf, sizeof(buf)), 8);
        assert_string_equal(buf, "\"\\u0000\"");
}

/* ---- rill_query_answer ----------------------------------------------------------- */

typedef struct fake {
        size_t windows; /* how many the fake store holds */
        int fail;
        size_t calls;
} fake_t;

static int fake_lookup(void *opaque, const char *key, size_t key_len, rill_qresult_t *res,
                       char *errstr, size_t errstr_size) {
        fake_t *f = opaque;
        (void)key, (void)key_len;
        f->calls++;
        if (f->fail) {
                snprintf(errstr, errstr_size, "rocksdb: \"corrupt\" \x01 /var/lib/secret");
                return -1;
        }
        for (size_t i = 0; i < f->windows; i++) {
                if (res->cnt >= res->max) {
                        res->truncated = 1;
                        break;
                }
                res->v[res->cnt++] = (rill_qwindow_t){
                    (int32_t)(i % 7), INT64_MIN + (int64_t)i, INT64_MAX - (int64_t)i, 4,
                    {{"sum", 0, INT64_MIN, 0}, {"count", 0, INT64_MAX, 0},
                     {"avg", 1, 0, -1.25e300}, {"nan\"\x01", 1, 0, 0.0 / 0.0}}};
        }
        return 0;
}

static json_t *parse_body(const rill_jbuf_t *b) {
        assert_false(b->failed);
        assert_true(b->len > 0 && b->len <= RILL_QUERY_BODY_MAX);
        assert_int_equal(b->p[b->len - 1], '\n');
        json_error_t e;
        json_t *j = json_loadb(b->p, b->len, JSON_ALLOW_NUL, &e);
        if (!j)
                fail_msg("body is not JSON (%s at %d): %.200s", e.text, e.position, b->p);
        return j;
}

static void answer_worst_case_key_and_instance(void **s) {
        (void)s;
        char key[RILL_QUERY_KEY_MAX];
        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (char)(i % 32);
        const char *instance = "w\"1\\\n\x02";
        fake_t f = {RILL_QUERY_WINDOWS_MAX + 5, 0, 0};
        rill_jbuf_t b;
        rill_jbuf_init(&b, RILL_QUERY_BODY_MAX);
        assert_int_equal(rill_query_answer(key, sizeof(key), instance, fake_lookup, &f, &b), 200);
        json_t *j = parse_body(&b);
        json_t *k = json_object_get(j, "key");
        assert_int_equal(json_string_length(k), sizeof(key));
        assert_memory_equal(json_string_value(k), key, sizeof(key));
        assert_string_equal(json_string_value(json_object_get(j, "instance")), instance);
        json_t *ws = json_object_get(j, "windows");
        assert_int_equal(json_array_size(ws), RILL_QUERY_WINDOWS_MAX);
        assert_true(json_is_true(json_object_get(j, "truncated")));
        json_t *w = json_array_get(ws, 3);
        assert_int_equal(json_integer_value(json_object_get(w, "partition")), 3);
        assert_true(json_integer_value(json_object_get(w, "sum")) == INT64_MIN);
        assert_true(json_integer_value(json_object_get(w, "count")) == INT64_MAX);
        assert_true(json_real_value(json_object_get(w, "avg")) == -1.25e300);
        assert_true(json_is_null(json_object_get(w, "nan\"\x01")));
        json_decref(j);
        rill_jbuf_free(&b);
}

static void answer_not_found_is_404_with_json(void **s) {
        (void)s;
        fake_t f = {0, 0, 0};
        rill_jbuf_t b;
        rill_jbuf_init(&b, RILL_QUERY_BODY_MAX);
        assert_int_equal(rill_query_answer("\xff\xfe", 2, "p1", fake_lookup, &f, &b), 404);
        json_t *j = parse_body(&b);
        assert_string_equal(json_string_value(json_object_get(j, "key")), "\xef\xbf\xbd\xef\xbf\xbd");
        assert_int_equal(json_array_size(json_object_get(j, "windows")), 0);
        assert_true(json_is_false(json_object_get(j, "truncated")));
        json_decref(j);
        rill_jbuf_free(&b);
}

static void answer_bad_keys_are_400_without_lookup(void **s) {
        (void)s;
        char key[RILL_QUERY_KEY_MAX + 1];
        memset(key, 'k', sizeof(key));
        fake_t f = {1, 0, 0};
        rill_jbuf_t b;
        rill_jbuf_init(&b, RILL_QUERY_BODY_MAX);
        assert_int_equal(rill_query_answer(key, sizeof(key), "p", fake_lookup, &f, &b), 400);
        json_t *j = parse_body(&b);
        const char *msg = json_string_value(json_object_get(j, "error"));
        assert_non_null(strstr(msg, "1025 bytes"));
        assert_non_null(strstr(msg, "at most 1024"));
        json_decref(j);
        assert_int_equal(rill_query_answer(NULL, 0, "p", fake_lookup, &f, &b), 400);
        json_decref(parse_body(&b));
        assert_int_equal(rill_query_answer("", 0, "p", fake_lookup, &f, &b), 400);
        json_decref(parse_body(&b));
        assert_int_equal(f.calls, 0);
        rill_jbuf_free(&b);
}

static void answer_store_error_is_500_without_details(void **s) {
        (void)s;
        fake_t f = {1, 1, 0};
        rill_jbuf_t b;
        rill_jbuf_init(&b, RILL_QUERY_BODY_MAX);
        rill_jbuf_printf(&b, "left over from before");
        assert_int_equal(rill_query_answer("k", 1, "p", fake_lookup, &f, &b), 500);
        json_t *j = parse_body(&b);
        assert_non_null(json_string_value(json_object_get(j, "error")));
        assert_null(strstr(b.p, "secret"));
        json_decref(j);
        rill_jbuf_free(&b);
}

/* ---- rill_jbuf ------------------------------------------------------------------- */

static void jbuf_limit_fails_and_stays_failed(void **s) {
        (void)s;
        rill_jbuf_t b;
        rill_jbuf_init(&b, 10);
        assert_int_equal(rill_jbuf_add(&b, "0123456789", 10), 0);
        assert_int_equal(rill_jbuf_add(&b, "x", 1), -1);
        assert_true(b.failed);
        assert_int_equal(rill_jbuf_printf(&b, "%d", 1), -1);
        assert_int_equal(b.len, 10);
        rill_jbuf_reset(&b);
        assert_int_equal(rill_jbuf_printf(&b, "%s-%d", "ab", 12), 0);
        assert_string_equal(b.p, "ab-12");
        rill_jbuf_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(string_too_long_for_buffer_is_empty_and_terminated),
                cmocka_unit_test(string_worst_case_fits_its_max),
                cmocka_unit_test(string_escapes),
                cmocka_unit_test(answer_worst_case_key_and_instance),
                cmocka_unit_test(answer_not_found_is_404_with_json),
                cmocka_unit_test(answer_bad_keys_are_400_without_lookup),
                cmocka_unit_test(answer_store_error_is_500_without_details),
                cmocka_unit_test(jbuf_limit_fails_and_stays_failed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
