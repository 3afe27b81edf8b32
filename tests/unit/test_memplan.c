/* Unit tests: memory.limit.mb divided (engine/memory.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memory.h"

static char err[512];

static const char *val(const rill_kafka_default_t *d, const char *key) {
        for (; d->key; d++)
                if (!strcmp(d->key, key))
                        return d->value;
        fail_msg("no default for %s", key);
        return NULL;
}

static void too_small_stops_with_one_line(void **s) {
        (void)s;
        rill_memplan_t p;
        /* 96 partitions, 1 thread: 64 + 24 + 8 reserved, 96 x 2 x 64 KB x 4 = 48 */
        assert_int_equal(rill_memplan_min_mb(96, 1), 144);
        assert_int_equal(rill_memplan(143, 96, 1, &p, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "memory.limit.mb=143 is too small for 96 aggregation partitions"));
        assert_non_null(strstr(err, "at least 144 MB"));
        assert_non_null(strstr(err, "hint: raise --memory-limit-mb"));
        assert_null(strchr(err, '\n'));
        assert_int_equal(rill_memplan(144, 96, 1, &p, err, sizeof(err)), 0);
        /* threads: each needs its consumer queue */
        assert_true(rill_memplan_min_mb(1, 16) > rill_memplan_min_mb(1, 1) + 16 * 8);
}

static void shares_add_up_within_the_budget(void **s) {
        (void)s;
        rill_memplan_t p;
        assert_int_equal(rill_memplan(152, 96, 2, &p, err, sizeof(err)), 0);
        assert_int_equal(p.reserved_mb, 64 + 24 + 16);
        assert_int_equal(p.budget_mb, 48);
        size_t b = (size_t)p.budget_mb << 20;
        assert_int_equal(p.write_buffer_bytes, 64 * 1024); /* b / 4 / (96 x 2) */
        assert_int_equal(p.max_write_buffers, 2);
        size_t consumers = (size_t)atoll(val(p.consumer, "queued.min.messages")) * 400 * 2;
        size_t restorers = (size_t)atoll(val(p.restorer, "queued.min.messages")) * 400 * 2;
        size_t producers = (size_t)atoll(val(p.producer, "queue.buffering.max.messages")) * 400 * 2;
        size_t total = 96 * p.write_buffer_bytes * 2 + p.block_cache_bytes + p.write_cache_bytes +
                       consumers + restorers + producers;
        assert_true(total <= b);
        assert_true(total > b * 9 / 10);
}

static void large_limits_keep_the_tuned_values(void **s) {
        (void)s;
        rill_memplan_t p;
        assert_int_equal(rill_memplan(1024, 12, 1, &p, err, sizeof(err)), 0);
        assert_int_equal(p.write_buffer_bytes, 8 << 20);
        assert_string_equal(val(p.consumer, "queued.min.messages"), "100000");
        assert_string_equal(val(p.consumer, "max.partition.fetch.bytes"), "262144");
        assert_string_equal(val(p.producer, "queue.buffering.max.messages"), "100000");
        /* the product's defaults (1024 MB, 12 partitions, 2 threads): the
         * full consumer queue throughput needs with the fetchers nudged
         * (performance.md section 13), the producers' cap */
        assert_int_equal(rill_memplan(1024, 12, 2, &p, err, sizeof(err)), 0);
        assert_string_equal(val(p.consumer, "queued.min.messages"), "100000");
        assert_string_equal(val(p.producer, "queue.buffering.max.messages"), "100000");
        assert_int_equal(rill_memplan(2048, 12, 1, &p, err, sizeof(err)), 0);
        assert_string_equal(val(p.restorer, "queued.max.messages.kbytes"), "32768");
        assert_string_equal(val(p.producer, "queue.buffering.max.messages"), "100000");
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(too_small_stops_with_one_line),
                                           cmocka_unit_test(shares_add_up_within_the_budget),
                                           cmocka_unit_test(large_limits_keep_the_tuned_values)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
