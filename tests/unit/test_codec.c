/* Unit tests: store key order and the msgpack aggregate codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include "codec.h"

static void agg_roundtrip(void **s) {
        (void)s;
        rill_agg_t in[] = {{0, 0, 0, 0},
                           {INT64_MAX, 1, -5, 1700000000000},
                           {123456789, 42, 1700000000000, 1700000059999},
                           {-1, 3, INT64_MIN, INT64_MAX}};
        for (size_t i = 0; i < sizeof(in) / sizeof(*in); i++) {
                unsigned char buf[64];
                rill_agg_t out;
                size_t n = rill_agg_encode(&in[i], buf, sizeof(buf));
                assert_true(n > 0);
                assert_int_equal(rill_agg_decode(buf, n, &out), 0);
                assert_memory_equal(&in[i], &out, sizeof(out));
        }
}

static void agg_rejects_garbage(void **s) {
        (void)s;
        rill_agg_t out;
        unsigned char buf[64];
        rill_agg_t a = {5, 2, 1, 2};
        size_t n = rill_agg_encode(&a, buf, sizeof(buf));
        assert_int_equal(rill_agg_decode(buf, n - 1, &out), -1);       /* truncated */
        assert_int_equal(rill_agg_decode("\x93\x01\x02\x03", 4, &out), -1); /* 3 items */
        assert_int_equal(rill_agg_decode("hello", 5, &out), -1);
        buf[n] = 0; /* trailing byte */
        assert_int_equal(rill_agg_decode(buf, n + 1, &out), -1);
        assert_int_equal(rill_agg_encode(&a, buf, 4), 0); /* does not fit */
}

static void wkey_orders_by_time_then_key(void **s) {
        (void)s;
        unsigned char a[64], b[64];
        size_t na = rill_wkey_encode(-60000, "zzz", 3, a);
        size_t nb = rill_wkey_encode(0, "aaa", 3, b);
        assert_true(memcmp(a, b, na < nb ? na : nb) < 0); /* negative before positive */
        na = rill_wkey_encode(60000, "a", 1, a);
        nb = rill_wkey_encode(60000, "b", 1, b);
        assert_true(memcmp(a, b, na) < 0);
        int64_t ws;
        const char *k;
        size_t kl;
        assert_int_equal(rill_wkey_decode(a, na, &ws, &k, &kl), 0);
        assert_int_equal(ws, 60000);
        assert_int_equal(kl, 1);
        assert_memory_equal(k, "a", 1);
        assert_int_equal(rill_wkey_decode(RILL_STREAM_TIME_KEY, 1, &ws, &k, &kl), -1);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(agg_roundtrip),
                                           cmocka_unit_test(agg_rejects_garbage),
                                           cmocka_unit_test(wkey_orders_by_time_then_key)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
