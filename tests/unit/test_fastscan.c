/*
 * test_fastscan.c -- the fast path must agree with jansson on every input:
 * the same verdict, the same extracted values, the same reason and detail.
 * Inputs: records generated from a grammar of good and bad pieces, and
 * random byte mutations of good records. Deterministic (fixed seed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "event.h"
#include "fastscan.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)(rng % n);
}
static const char *pick(const char *const *v, size_t n) { return v[rnd((uint32_t)n)]; }
#define PICK(v) pick(v, sizeof(v) / sizeof(v[0]))

static const char *const WS[] = {"", "", "", " ", "\n", "\t ", "\r\n"};
static const char *const STRINGS[] = {
    "\"seller-0001\"", "\"a\"", "\"\"", "\"s p a c e\"", "\"esc\\\"aped\"", "\"uni\\u00e9\"",
    "\"nul\\u0000\"", "\"caf\xc3\xa9\"", "\"bad\xff\"", "\"ctl\x01\"",
    "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"", "\"unterminated"};
static const char *const NUMBERS[] = {
    "0", "1", "42", "1700000000", "1700000000123", "01", "-5", "-0", "1.5", "1e3", "2E2", "1.0",
    "999999999999999999", "9999999999999999999", "99999999999999999999", "12a", "+1"};
static const char *const OTHERS[] = {"true", "false", "null", "{}", "[]", "[1,2]",
                                     "{\"a\":1}", "tru", "nul", "NaN"};
static const char *const KEYS[] = {"seller_id", "amount_usd", "sale_ts", "note", "x",
                                   "seller_id", "amount_usd", "sale_ts"};

static size_t value(char *b, size_t at, size_t cap) {
        const char *v;
        switch (rnd(3)) {
        case 0: v = PICK(STRINGS); break;
        case 1: v = PICK(NUMBERS); break;
        default: v = PICK(OTHERS); break;
        }
        return at + (size_t)snprintf(b + at, cap - at, "%s", v);
}

/* A record from the grammar, mostly well-formed, often invalid in meaning. */
static size_t gen(char *b, size_t cap) {
        size_t n = 0;
        int members = (int)rnd(6);
        n += (size_t)snprintf(b + n, cap - n, "%s{", PICK(WS));
        for (int i = 0; i < members && n < cap - 200; i++) {
                const char *k = PICK(KEYS);
                n += (size_t)snprintf(b + n, cap - n, "%s%s\"%s\"%s:%s", i ? "," : "", PICK(WS), k,
                                      PICK(WS), PICK(WS));
                /* the expected type most of the time, so many records are valid */
                if (rnd(4)) {
                        if (!strcmp(k, "seller_id"))
                                n += (size_t)snprintf(b + n, cap - n, "\"s%u\"", rnd(1000));
                        else if (!strcmp(k, "amount_usd"))
                                n += (size_t)snprintf(b + n, cap - n, "%u", rnd(100000));
                        else if (!strcmp(k, "sale_ts"))
                                n += (size_t)snprintf(b + n, cap - n, "%u", 1700000000 + rnd(1000));
                        else
                                n = value(b, n, cap);
                } else {
                        n = value(b, n, cap);
                }
                n += (size_t)snprintf(b + n, cap - n, "%s", PICK(WS));
        }
        n += (size_t)snprintf(b + n, cap - n, "}%s", rnd(20) ? PICK(WS) : " x");
        return n;
}

static size_t good(char *b, size_t cap) {
        return (size_t)snprintf(b, cap, "{\"seller_id\":\"seller-%u\",\"amount_usd\":%u,\"sale_ts\":%u}",
                                rnd(10000), rnd(5000), 1700000000 + rnd(100000));
}

static void mutate(char *b, size_t *n, size_t cap) {
        int k = 1 + (int)rnd(3);
        for (int i = 0; i < k && *n > 0; i++) {
                size_t at = rnd((uint32_t)*n);
                switch (rnd(4)) {
                case 0: b[at] = (char)rnd(256); break;                       /* flip */
                case 1: memmove(b + at, b + at + 1, *n - at - 1); (*n)--; break; /* delete */
                case 2:                                                      /* insert */
                        if (*n + 1 < cap) {
                                memmove(b + at + 1, b + at, *n - at);
                                b[at] = "{}[]\",:\\ 0-.e"[rnd(14)];
                                (*n)++;
                        }
                        break;
                default: *n = at; break; /* truncate */
                }
        }
}

static int fast_accepts;

static void check_one(const char *b, size_t n, sales_parse_conf_t *pc) {
        rill_raw_t raw = {NULL, 0, b, n, "sales-usd", 0, 0, 1700000500000LL};
        rill_event_t e1, e2;
        rill_reject_t r1, r2;
        memset(&r1, 0, sizeof(r1));
        memset(&r2, 0, sizeof(r2));
        sales_fields_t f;
        if (sales_fastscan(b, n, pc->key_max, &f))
                fast_accepts++;
        int a = sales_extract(pc, &raw, &e1, &r1);
        int c = sales_extract_full(pc, &raw, &e2, &r2);
        if (a != c || (a == 0 && (e1.key_len != e2.key_len || memcmp(e1.key, e2.key, e1.key_len) ||
                                  e1.value != e2.value || e1.ts_ms != e2.ts_ms)) ||
            (a != 0 && (strcmp(r1.reason, r2.reason) || strcmp(r1.detail, r2.detail)))) {
                fprintf(stderr, "disagreement on [%.*s]: fast=%d (%s: %s) full=%d (%s: %s)\n",
                        (int)n, b, a, r1.reason, r1.detail, c, r2.reason, r2.detail);
                fail();
        }
}

static void agree_on_generated(void **s) {
        (void)s;
        sales_parse_conf_t pc = {0, 3600000, 0, 64};
        char b[2048];
        fast_accepts = 0;
        for (int i = 0; i < 100000; i++) {
                pc.ts_millis = (int)rnd(2);
                pc.max_past_ms = rnd(3) ? 0 : 86400000;
                size_t n = gen(b, sizeof(b));
                check_one(b, n, &pc);
        }
        /* the grammar yields plenty of records the fast path must take */
        assert_true(fast_accepts > 1000);
}

static void agree_on_mutated(void **s) {
        (void)s;
        sales_parse_conf_t pc = {0, 3600000, 0, 64};
        char b[512];
        fast_accepts = 0;
        for (int i = 0; i < 100000; i++) {
                size_t n = good(b, sizeof(b));
                if (i % 4)
                        mutate(b, &n, sizeof(b));
                check_one(b, n, &pc);
        }
        assert_true(fast_accepts > 25000); /* at least the unmutated quarter */
}

static void takes_the_common_record(void **s) {
        (void)s;
        sales_fields_t f;
        const char *j = " {\"seller_id\": \"seller-7\", \"note\": null, \"amount_usd\": 120,\n"
                        "  \"sale_ts\": 1700000000} ";
        assert_int_equal(sales_fastscan(j, strlen(j), 64, &f), 1);
        assert_int_equal(f.key_len, 8);
        assert_memory_equal(f.key, "seller-7", 8);
        assert_int_equal(f.amount, 120);
        assert_int_equal(f.ts, 1700000000);
        /* defers, never rejects, what it does not take */
        const char *d[] = {"{\"seller_id\":\"a\",\"seller_id\":\"b\",\"amount_usd\":1,\"sale_ts\":1}",
                           "{\"seller_id\":\"\\u0041\",\"amount_usd\":1,\"sale_ts\":1}",
                           "{\"seller_id\":\"a\",\"amount_usd\":-1,\"sale_ts\":1}",
                           "{\"seller_id\":\"a\",\"amount_usd\":1.0,\"sale_ts\":1}",
                           "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":1,\"n\":{}}",
                           "{\"seller_id\":\"a\",\"amount_usd\":1}",
                           "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":1}x"};
        for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
                assert_int_equal(sales_fastscan(d[i], strlen(d[i]), 64, &f), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(takes_the_common_record),
                                           cmocka_unit_test(agree_on_generated),
                                           cmocka_unit_test(agree_on_mutated)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
