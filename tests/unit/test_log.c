/*
 * test_log.c -- every log line stays one parseable line whatever the values
 * hold: quotes, backslashes, newlines, tabs, control bytes, invalid UTF-8,
 * values too long for the line. rill_log writes to stderr; each test points
 * stderr at a temporary file, logs, and parses what was written with a strict
 * logfmt reader (the same grammar as tests/lib/logfmt.py) or with jansson.
 */
#include "log.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- capture ------------------------------------------------------------------ */

static char captured[16384];

/* Runs rill_log with stderr redirected to a temporary file; the text written
 * is left in captured[]. */
#define CAPTURE(...)                                                                         \
        do {                                                                                 \
                fflush(stderr);                                                              \
                int saved = dup(2);                                                          \
                FILE *tmp = tmpfile();                                                       \
                assert_non_null(tmp);                                                        \
                dup2(fileno(tmp), 2);                                                        \
                rill_log(__VA_ARGS__);                                                       \
                fflush(stderr);                                                              \
                dup2(saved, 2);                                                              \
                close(saved);                                                                \
                rewind(tmp);                                                                 \
                size_t n_ = fread(captured, 1, sizeof(captured) - 1, tmp);                   \
                captured[n_] = '\0';                                                         \
                fclose(tmp);                                                                 \
        } while (0)

/* ---- a strict logfmt reader ------------------------------------------------------- */

typedef struct {
        char key[64][64];
        char val[64][4096];
        int n;
} pairs_t;

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Parses one line (without its '\n'): key=value pairs separated by one space;
 * a value is bare (no space, '"', '=' or control byte) or a double-quoted
 * string with the escapes \" \\ \n \r \t \uXXXX (XXXX < 0x100 here).
 * A key without '=' is a flag (value ""). @returns 0, or -1 with the offset. */
static int parse_logfmt(const char *s, pairs_t *out, size_t *bad) {
        size_t i = 0;
        out->n = 0;
        while (s[i]) {
                if (out->n >= 64)
                        return *bad = i, -1;
                size_t k = 0;
                while (s[i] && s[i] != '=' && s[i] != ' ' && s[i] != '"' && (unsigned char)s[i] > 0x20) {
                        if (k + 1 < sizeof(out->key[0]))
                                out->key[out->n][k++] = s[i];
                        i++;
                }
                out->key[out->n][k] = '\0';
                out->val[out->n][0] = '\0';
                if (!k)
                        return *bad = i, -1;
                if (s[i] == '=') {
                        i++;
                        size_t v = 0;
                        char *val = out->val[out->n];
                        if (s[i] == '"') {
                                i++;
                                for (;;) {
                                        unsigned char c = (unsigned char)s[i];
                                        if (!c || c < 0x20)
                                                return *bad = i, -1; /* unterminated or raw control */
                                        if (c == '"') {
                                                i++;
                                                break;
                                        }
                                        if (c == '\\') {
                                                char e = s[i + 1], r;
                                                i += 2;
                                                if (e == '"' || e == '\\')
                                                        r = e;
                                                else if (e == 'n')
                                                        r = '\n';
                                                else if (e == 'r')
                                                        r = '\r';
                                                else if (e == 't')
                                                        r = '\t';
                                                else if (e == 'u' && s[i] == '0' && s[i + 1] == '0' &&
                                                         hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
                                                        r = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
                                                        i += 4;
                                                } else
                                                        return *bad = i, -1;
                                                if (v + 1 < sizeof(out->val[0]))
                                                        val[v++] = r;
                                                continue;
                                        }
                                        if (v + 1 < sizeof(out->val[0]))
                                                val[v++] = (char)c;
                                        i++;
                                }
                        } else {
                                while (s[i] && s[i] != ' ') {
                                        unsigned char c = (unsigned char)s[i];
                                        if (c < 0x20 || c == '"' || c == '=' || c == 0x7f)
                                                return *bad = i, -1;
                                        if (v + 1 < sizeof(out->val[0]))
                                                val[v++] = (char)c;
                                        i++;
                                }
                        }
                        val[v] = '\0';
                }
                out->n++;
                if (s[i] == ' ') {
                        i++;
                        if (!s[i] || s[i] == ' ')
                                return *bad = i, -1;
                } else if (s[i])
                        return *bad = i, -1;
        }
        return 0;
}

static pairs_t pairs;

/* The captured text must be exactly one line that parses; returns its pairs. */
static pairs_t *one_line(void) {
        size_t len = strlen(captured);
        assert_true(len > 0);
        assert_int_equal(captured[len - 1], '\n');
        captured[len - 1] = '\0';
        if (strchr(captured, '\n'))
                fail_msg("more than one line: %s", captured);
        size_t bad = 0;
        if (parse_logfmt(captured, &pairs, &bad))
                fail_msg("not logfmt at offset %zu: %s", bad, captured);
        return &pairs;
}

static const char *get(pairs_t *p, const char *key) {
        for (int i = 0; i < p->n; i++)
                if (!strcmp(p->key[i], key))
                        return p->val[i];
        fail_msg("no key %s in %s", key, captured);
        return NULL;
}

/* ---- logfmt ------------------------------------------------------------------------ */

static int setup_logfmt(void **state) {
        (void)state;
        return rill_log_configure("debug", "logfmt");
}

static void test_quoted_value_round_trips(void **state) {
        (void)state;
        const char *nasty = "relation \"x\" does not exist\nDETAIL:\ta\\b \x01\x1f\x7f end";
        CAPTURE(RILL_LOG_ERROR, "commit_failed", "thread=%s during=%s error=\"%s\"", "w0", "pg", nasty);
        pairs_t *p = one_line();
        assert_string_equal(get(p, "level"), "error");
        assert_string_equal(get(p, "event"), "commit_failed");
        assert_string_equal(get(p, "thread"), "w0");
        assert_string_equal(get(p, "error"), nasty);
}

static void test_bare_value_is_quoted_when_needed(void **state) {
        (void)state;
        CAPTURE(RILL_LOG_WARN, "store_wiped", "dir=%s key=%s empty=%s n=%d", "/tmp/a b", "k=\"v\"", "", 7);
        pairs_t *p = one_line();
        assert_string_equal(get(p, "dir"), "/tmp/a b");
        assert_string_equal(get(p, "key"), "k=\"v\"");
        assert_string_equal(get(p, "empty"), "");
        assert_string_equal(get(p, "n"), "7");
}

static void test_plain_values_stay_bare(void **state) {
        (void)state;
        CAPTURE(RILL_LOG_INFO, "commit", "thread=%s results=%zu elapsed_ms=%lld pct=%.1f x=%05d", "w-1",
                (size_t)12, -3LL, 2.25, 42);
        assert_non_null(strstr(captured, " thread=w-1 results=12 elapsed_ms=-3 pct=2.2 x=00042\n"));
        one_line();
}

static void test_null_and_precision(void **state) {
        (void)state;
        const char *none = getenv("RILL_TEST_LOG_UNSET_VARIABLE");
        CAPTURE(RILL_LOG_INFO, "e", "a=%s b=\"%.*s\" c=%%", none, 3, "abcdef");
        pairs_t *p = one_line();
        assert_string_equal(get(p, "a"), "(null)");
        assert_string_equal(get(p, "b"), "abc");
        assert_string_equal(get(p, "c"), "%");
}

static void test_invalid_utf8_is_escaped(void **state) {
        (void)state;
        CAPTURE(RILL_LOG_INFO, "e", "ok=\"%s\" bad=%s", "caf\xc3\xa9", "x\xff\xc3(");
        pairs_t *p = one_line();
        assert_string_equal(get(p, "ok"), "caf\xc3\xa9");
        assert_string_equal(get(p, "bad"), "x\xff\xc3(");
}

static void test_long_value_is_truncated_but_closed(void **state) {
        (void)state;
        static char big[8000];
        for (size_t i = 0; i < sizeof(big) - 1; i++)
                big[i] = "\"\n\\x"[i % 4];
        big[sizeof(big) - 1] = '\0';
        CAPTURE(RILL_LOG_ERROR, "e", "thread=%s error=\"%s\" after=%d", "w0", big, 1);
        pairs_t *p = one_line();
        assert_string_equal(get(p, "thread"), "w0");
        assert_string_equal(get(p, "truncated"), "true");
        const char *e = get(p, "error");
        assert_true(strlen(e) > 100);
        assert_memory_equal(e, big, strlen(e));
}

/* ---- JSON ------------------------------------------------------------------------------ */

static int setup_json(void **state) {
        (void)state;
        return rill_log_configure("debug", "json");
}

static void test_json_line_is_valid_and_keeps_the_value(void **state) {
        (void)state;
        const char *nasty = "a \"q\" b\\c\nd\te\x01 caf\xc3\xa9 \xff";
        CAPTURE(RILL_LOG_WARN, "txn_aborted", "thread=%s reason=\"%s\"", "w0", nasty);
        size_t len = strlen(captured);
        assert_int_equal(captured[len - 1], '\n');
        captured[len - 1] = '\0';
        assert_null(strchr(captured, '\n'));
        json_error_t je;
        json_t *d = json_loads(captured, 0, &je);
        if (!d)
                fail_msg("invalid JSON (%s): %s", je.text, captured);
        assert_string_equal(json_string_value(json_object_get(d, "event")), "txn_aborted");
        assert_string_equal(json_string_value(json_object_get(d, "level")), "warn");
        /* the msg is itself a logfmt line holding the original value */
        snprintf(captured, sizeof(captured), "%s", json_string_value(json_object_get(d, "msg")));
        json_decref(d);
        size_t bad;
        assert_int_equal(parse_logfmt(captured, &pairs, &bad), 0);
        assert_string_equal(get(&pairs, "reason"), nasty);
}

int main(void) {
        const struct CMUnitTest logfmt[] = {
            cmocka_unit_test_setup(test_quoted_value_round_trips, setup_logfmt),
            cmocka_unit_test_setup(test_bare_value_is_quoted_when_needed, setup_logfmt),
            cmocka_unit_test_setup(test_plain_values_stay_bare, setup_logfmt),
            cmocka_unit_test_setup(test_null_and_precision, setup_logfmt),
            cmocka_unit_test_setup(test_invalid_utf8_is_escaped, setup_logfmt),
            cmocka_unit_test_setup(test_long_value_is_truncated_but_closed, setup_logfmt),
            cmocka_unit_test_setup(test_json_line_is_valid_and_keeps_the_value, setup_json),
        };
        return cmocka_run_group_tests(logfmt, NULL, NULL);
}
