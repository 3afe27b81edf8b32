/* Unit tests: sales event extraction (every bad input has its reason) and
 * result formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include <time.h>
#include "event.h"

static sales_parse_conf_t pc = {0, 3600000, 0, 16};

static int64_t batch_now_ms; /* 0: the extractor reads the clock itself */

static int run(const char *json, size_t len, rill_event_t *ev, rill_reject_t *rej) {
        rill_raw_t raw = {NULL, 0, json, len, "sales-usd", 0, 0, batch_now_ms};
        memset(rej, 0, sizeof(*rej));
        return sales_extract(&pc, &raw, ev, rej);
}

static void good_event(void **s) {
        (void)s;
        rill_event_t ev;
        rill_reject_t rej;
        const char *j = "{\"seller_id\":\"al\\\"ice'; DROP TABLE x;--\",\"amount_usd\":250,\"sale_ts\":1700000000}";
        pc.key_max = 64;
        assert_int_equal(run(j, strlen(j), &ev, &rej), 0);
        assert_int_equal(ev.key_len, strlen("al\"ice'; DROP TABLE x;--"));
        assert_memory_equal(ev.key, "al\"ice'; DROP TABLE x;--", ev.key_len);
        assert_int_equal(ev.value, 250);
        assert_int_equal(ev.ts_ms, 1700000000000LL);
        pc.key_max = 16;
}

static void expect_reason(const char *json, size_t len, const char *reason) {
        rill_event_t ev;
        rill_reject_t rej;
        assert_int_equal(run(json, len, &ev, &rej), -1);
        if (strcmp(rej.reason, reason))
                fail_msg("input %.*s: reason %s, expected %s (%s)", (int)len, json, rej.reason,
                         reason, rej.detail);
        assert_true(strlen(rej.detail) > 0);
}
#define EXPECT(j, r) expect_reason(j, sizeof(j) - 1, r)

static void bad_events(void **s) {
        (void)s;
        EXPECT("", "malformed_json");
        EXPECT("{not json", "malformed_json");
        EXPECT("[1,2]", "not_an_object");
        EXPECT("{\"amount_usd\":1,\"sale_ts\":1700000000}", "missing_field");
        EXPECT("{\"seller_id\":\"a\",\"sale_ts\":1700000000}", "missing_field");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1}", "missing_field");
        EXPECT("{\"seller_id\":7,\"amount_usd\":1,\"sale_ts\":1700000000}", "wrong_type");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":\"1\",\"sale_ts\":1700000000}", "wrong_type");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":\"x\"}", "wrong_type");
        EXPECT("{\"seller_id\":\"\",\"amount_usd\":1,\"sale_ts\":1700000000}", "invalid_seller_id");
        EXPECT("{\"seller_id\":\"01234567890123456\",\"amount_usd\":1,\"sale_ts\":1700000000}",
               "invalid_seller_id");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":-5,\"sale_ts\":1700000000}", "invalid_amount");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1.5,\"sale_ts\":1700000000}", "invalid_amount");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":99999999999999999999,\"sale_ts\":1}",
               "malformed_json");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":-1}", "invalid_timestamp");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":1.5}", "invalid_timestamp");
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":99999999999}", "invalid_timestamp");
        EXPECT("{\"seller_id\":\"a\",\"seller_id\":\"b\",\"amount_usd\":1,\"sale_ts\":1700000000}",
               "malformed_json");
        EXPECT("{\"seller_id\":\"a\\u0000b\",\"amount_usd\":1,\"sale_ts\":1700000000}",
               "malformed_json");
        EXPECT("{\"seller_id\":\"\xff\xfe\",\"amount_usd\":1,\"sale_ts\":1700000000}", "invalid_utf8");
}

static void past_limit(void **s) {
        (void)s;
        pc.max_past_ms = 86400000;
        EXPECT("{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":1000}", "invalid_timestamp");
        pc.max_past_ms = 0;
}

static void millisecond_timestamps(void **s) {
        (void)s;
        rill_event_t ev;
        rill_reject_t rej;
        pc.ts_millis = 1;
        const char *j = "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":1700000000123}";
        assert_int_equal(run(j, strlen(j), &ev, &rej), 0);
        assert_int_equal(ev.ts_ms, 1700000000123LL);
        /* in seconds the same number would be far in the future */
        pc.ts_millis = 0;
        assert_int_equal(run(j, strlen(j), &ev, &rej), -1);
        assert_string_equal(rej.reason, "invalid_timestamp");
}

/* The limits are relative to the batch's clock when the worker gives one. */
static void batch_clock(void **s) {
        (void)s;
        rill_event_t ev;
        rill_reject_t rej;
        const char *j = "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":1000000}";
        batch_now_ms = 1000000LL * 1000 - 3600000; /* sale_ts exactly max.future ahead */
        assert_int_equal(run(j, strlen(j), &ev, &rej), 0);
        batch_now_ms -= 1;
        assert_int_equal(run(j, strlen(j), &ev, &rej), -1);
        assert_string_equal(rej.reason, "invalid_timestamp");
        batch_now_ms = 0;
}

static void format_result(void **s) {
        (void)s;
        char buf[512];
        char err[256];
        rill_aggregator_t *a = rill_aggregator_fields_new(sales_fields, SALES_FIGURES, err,
                                                          sizeof(err));
        assert_non_null(a);
        int64_t st[4] = {1234, 5, 0, 0};
        rill_result_t r = {"se\"l", 4, 1763932140000, 1763932200000, st, a};
        size_t n = sales_format(NULL, &r, buf, sizeof(buf));
        assert_true(n > 0);
        assert_string_equal(buf,
                            "{\"seller_id\":\"se\\\"l\",\"window_start\":\"2025-11-23T21:09:00Z\","
                            "\"window_end\":\"2025-11-23T21:10:00Z\",\"window_start_ms\":1763932140000,"
                            "\"total_amount_usd\":1234,\"sales_count\":5}");
        assert_int_equal(sales_format(NULL, &r, buf, 20), 0); /* too small: refused, no overflow */
        rill_aggregator_destroy(a);
}

/* With max.future.ms=0 (no limit relative to the clock) an event time is
 * still bounded: beyond 9999-12-31T23:59:59.999Z it is dead-lettered, so one
 * record cannot push stream time to the end of int64 (window arithmetic
 * overflow, window keys in the store's meta-key range, every later record of
 * the partition late). Both the fast path and jansson's. */
static void far_future_without_limit(void **s) {
        (void)s;
        rill_event_t ev;
        rill_reject_t rej;
        rill_raw_t raw = {NULL, 0, NULL, 0, "sales-usd", 0, 0, 0};
        pc.max_future_ms = 0;
        static const struct {
                int millis;
                const char *json;
                int ok;
        } cases[] = {
            {0, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":253402300799}", 1},
            {0, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":253402300800}", 0},
            {0, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":9223372036854775}", 0},
            {1, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":253402300799999}", 1},
            {1, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":253402300800000}", 0},
            {1, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":9223372036854775807}", 0},
            {1, "{\"seller_id\":\"a\",\"amount_usd\":1,\"sale_ts\":9223372036854775000}", 0},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                pc.ts_millis = cases[i].millis;
                raw.value = cases[i].json;
                raw.value_len = strlen(cases[i].json);
                for (int full = 0; full < 2; full++) {
                        memset(&rej, 0, sizeof(rej));
                        int rc = full ? sales_extract_full(&pc, &raw, &ev, &rej)
                                      : sales_extract(&pc, &raw, &ev, &rej);
                        if (cases[i].ok) {
                                if (rc)
                                        fail_msg("%s: rejected (%s: %s)", cases[i].json,
                                                 rej.reason, rej.detail);
                                continue;
                        }
                        if (rc != -1)
                                fail_msg("%s (%s path): accepted with ts_ms %lld",
                                         cases[i].json, full ? "full" : "fast",
                                         (long long)ev.ts_ms);
                        assert_string_equal(rej.reason, "invalid_timestamp");
                        assert_non_null(strstr(rej.detail, "9999-12-31T23:59:59.999Z"));
                }
        }
        pc.ts_millis = 0;
        pc.max_future_ms = 3600000;
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(good_event), cmocka_unit_test(bad_events),
                                           cmocka_unit_test(past_limit), cmocka_unit_test(millisecond_timestamps), cmocka_unit_test(batch_clock),
                                           cmocka_unit_test(far_future_without_limit),
                                           cmocka_unit_test(format_result)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
