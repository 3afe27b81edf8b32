/* Unit tests: the built-in aggregator (figures, overflow, encoding) and a
 * window store carrying an aggregator's state it knows nothing of. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "codec.h"
#include "wstore.h"

static char err[512];

static const rill_agg_field_t all_ops[] = {
    {"sum", RILL_AGG_SUM},         {"count", RILL_AGG_COUNT},     {"min", RILL_AGG_MIN},
    {"max", RILL_AGG_MAX},         {"avg", RILL_AGG_AVG},         {"first_ts_ms", RILL_AGG_MIN_TIME},
    {"last_ts_ms", RILL_AGG_MAX_TIME},
};
#define NOPS (int)(sizeof(all_ops) / sizeof(*all_ops))

static void add(const rill_aggregator_t *a, void *st, int64_t value, int64_t ts, int want) {
        rill_event_t ev = {"k", 1, value, ts};
        rill_reject_t rej;
        memset(&rej, 0, sizeof(rej));
        assert_int_equal(a->add(a->opaque, st, &ev, &rej), want);
        if (want)
                assert_string_equal(rej.reason, "sum_overflow");
}

static rill_value_t fig(const rill_aggregator_t *a, const void *st, const char *name) {
        int i = rill_aggregator_value_index(a, name);
        assert_true(i >= 0);
        rill_result_t r = {"k", 1, 0, 1, st, a};
        return rill_result_value(&r, i);
}

static void every_builtin_figure(void **s) {
        (void)s;
        rill_aggregator_t *a = rill_aggregator_fields_new(all_ops, NOPS, err, sizeof(err));
        assert_non_null(a);
        assert_int_equal(a->n_values, NOPS);
        assert_true(a->values[4].is_double && !a->values[3].is_double);
        _Alignas(16) unsigned char st[RILL_STATE_BYTES_MAX];
        a->init(a->opaque, st);
        add(a, st, 10, 5000, 0);
        add(a, st, -4, 1000, 0);
        add(a, st, 30, 9000, 0);
        assert_int_equal(fig(a, st, "sum").i, 36);
        assert_int_equal(fig(a, st, "count").i, 3);
        assert_int_equal(fig(a, st, "min").i, -4);
        assert_int_equal(fig(a, st, "max").i, 30);
        assert_true(fig(a, st, "avg").d == 12.0);
        assert_int_equal(fig(a, st, "first_ts_ms").i, 1000);
        assert_int_equal(fig(a, st, "last_ts_ms").i, 9000);
        /* an overflow changes no figure and names its reason */
        unsigned char before[RILL_STATE_BYTES_MAX];
        memcpy(before, st, a->state_size);
        add(a, st, INT64_MAX, 20000, -1);
        assert_memory_equal(before, st, a->state_size);
        /* encode / decode round trip; figures unchanged */
        unsigned char buf[RILL_STATE_ENCODED_MAX], back[RILL_STATE_BYTES_MAX];
        size_t n = a->encode(a->opaque, st, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(a->decode(a->opaque, buf, n, back), 0);
        assert_memory_equal(back, st, a->state_size);
        assert_int_equal(a->decode(a->opaque, buf, n - 1, back), -1);
        assert_int_equal(a->encode(a->opaque, st, buf, 8), 0); /* does not fit: refused */
        /* JSON of the figures: plain names, the average as a double */
        char js[512];
        rill_aggregate_json(a, st, js, sizeof(js));
        assert_string_equal(js, ",\"sum\":36,\"count\":3,\"min\":-4,\"max\":30,\"avg\":12,"
                                "\"first_ts_ms\":1000,\"last_ts_ms\":9000");
        rill_aggregator_destroy(a);
}

/* The sales figures keep the bytes of the fixed aggregate that came before
 * (rill_agg_t: [sum, count, first_ts, last_ts]): stores and changelogs of a
 * running deployment stay readable. */
static void sales_figures_keep_the_old_encoding(void **s) {
        (void)s;
        static const rill_agg_field_t sales[] = {{"sum", RILL_AGG_SUM},
                                                 {"count", RILL_AGG_COUNT},
                                                 {"first_ts_ms", RILL_AGG_MIN_TIME},
                                                 {"last_ts_ms", RILL_AGG_MAX_TIME}};
        rill_aggregator_t *a = rill_aggregator_fields_new(sales, 4, err, sizeof(err));
        assert_non_null(a);
        _Alignas(16) unsigned char st[RILL_STATE_BYTES_MAX];
        a->init(a->opaque, st);
        add(a, st, 700, 1700000001000, 0);
        add(a, st, 50, 1700000000000, 0);
        unsigned char mine[64], old[64];
        rill_agg_t o = {750, 2, 1700000000000, 1700000001000};
        size_t n = a->encode(a->opaque, st, mine, sizeof(mine));
        size_t m = rill_agg_encode(&o, old, sizeof(old));
        assert_int_equal(n, m);
        assert_memory_equal(mine, old, n);
        /* and a negative count is refused, as before */
        rill_agg_t bad = {1, -1, 0, 0};
        m = rill_agg_encode(&bad, old, sizeof(old));
        assert_int_equal(a->decode(a->opaque, old, m, st), -1);
        rill_aggregator_destroy(a);
}

static void bad_definitions_are_refused_with_a_reason(void **s) {
        (void)s;
        assert_null(rill_aggregator_fields_new(all_ops, 0, err, sizeof(err)));
        assert_non_null(strstr(err, "1 to 16"));
        rill_agg_field_t dup[] = {{"n", RILL_AGG_COUNT}, {"n", RILL_AGG_SUM}};
        assert_null(rill_aggregator_fields_new(dup, 2, err, sizeof(err)));
        assert_non_null(strstr(err, "two figures \"n\""));
        rill_agg_field_t odd[] = {{"total usd", RILL_AGG_SUM}};
        assert_null(rill_aggregator_fields_new(odd, 1, err, sizeof(err)));
        assert_non_null(strstr(err, "letters, digits or '_'"));
        rill_agg_field_t none[] = {{NULL, RILL_AGG_SUM}};
        assert_null(rill_aggregator_fields_new(none, 1, err, sizeof(err)));
        rill_agg_field_t bad_op[] = {{"x", (rill_agg_op_t)99}};
        assert_null(rill_aggregator_fields_new(bad_op, 1, err, sizeof(err)));
        assert_non_null(strstr(err, "unknown op"));
        rill_aggregator_t custom = {0};
        assert_int_equal(rill_aggregator_check(&custom, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "lacks a function"));
}

/* A store opened with an aggregator's codec carries its state through the
 * cache, RocksDB, a reopen, a closing scan and a changelog restore, bytes
 * it never interprets (an average takes two slots here: 8 in all). */
static void store_carries_any_state(void **s) {
        (void)s;
        char dir[] = "/tmp/rill-test-aggregate-XXXXXX";
        assert_non_null(mkdtemp(dir));
        rill_aggregator_t *a = rill_aggregator_fields_new(all_ops, NOPS, err, sizeof(err));
        assert_non_null(a);
        assert_int_equal(a->state_size, 8 * sizeof(int64_t));
        rill_state_codec_t codec;
        rill_aggregator_codec(a, &codec);
        rill_wstore_open_opts_t opts = {1000, 1, &codec};
        int wiped = 0;
        rill_wstore_t *ws = rill_wstore_open_opts(dir, "app|cl|0", &opts, &wiped, err, sizeof(err));
        assert_non_null(ws);
        _Alignas(16) unsigned char st[RILL_STATE_BYTES_MAX], got[RILL_STATE_BYTES_MAX];
        a->init(a->opaque, st);
        add(a, st, 5, 100, 0);
        add(a, st, 9, 200, 0);
        rill_wstore_put(ws, 0, "k", 1, st);
        assert_int_equal(rill_wstore_apply(ws, 7, 200, err, sizeof(err)), 0);
        rill_wstore_close(ws);
        ws = rill_wstore_open_opts(dir, "app|cl|0", &opts, &wiped, err, sizeof(err));
        assert_non_null(ws);
        assert_int_equal(rill_wstore_get(ws, 0, "k", 1, got, err, sizeof(err)), 1);
        assert_memory_equal(got, st, a->state_size);
        rill_wlist_t l = {0};
        assert_int_equal(rill_wstore_closed(ws, 60000, &l, err, sizeof(err)), 0);
        assert_int_equal(l.cnt, 1);
        rill_result_t r = {l.v[0].key, l.v[0].key_len, 0, 60000, l.v[0].state, a};
        assert_true(rill_result_value(&r, rill_aggregator_value_index(a, "avg")).d == 7.0);
        rill_wlist_free(&l);
        /* a changelog record of this state restores; one of another shape
         * (the old 4-integer aggregate) is refused */
        unsigned char key[16], val[RILL_STATE_ENCODED_MAX];
        size_t klen = rill_wkey_encode(60000, "k", 1, key);
        size_t vlen = a->encode(a->opaque, st, val, sizeof(val));
        assert_int_equal(rill_wstore_restore_add(ws, key, klen, val, vlen), 0);
        rill_agg_t old = {1, 1, 0, 0};
        vlen = rill_agg_encode(&old, val, sizeof(val));
        assert_int_equal(rill_wstore_restore_add(ws, key, klen, val, vlen), -1);
        assert_int_equal(rill_wstore_restore_flush(ws, 9, err, sizeof(err)), 0);
        assert_int_equal(rill_wstore_get(ws, 60000, "k", 1, got, err, sizeof(err)), 1);
        assert_memory_equal(got, st, a->state_size);
        rill_wstore_close(ws);
        assert_int_equal(rill_wstore_wipe(dir, err, sizeof(err)), 0);
        rill_aggregator_destroy(a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(every_builtin_figure),
            cmocka_unit_test(sales_figures_keep_the_old_encoding),
            cmocka_unit_test(bad_definitions_are_refused_with_a_reason),
            cmocka_unit_test(store_carries_any_state),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
