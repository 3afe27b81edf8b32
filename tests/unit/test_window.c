/* Unit tests: tumbling window arithmetic and ISO-8601 formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>
#include "codec.h"
#include "window.h"

static void window_start_floors(void **s) {
        (void)s;
        assert_int_equal(rill_window_start(0, 60000), 0);
        assert_int_equal(rill_window_start(59999, 60000), 0);
        assert_int_equal(rill_window_start(60000, 60000), 60000);
        assert_int_equal(rill_window_start(1700000012345, 60000), 1700000000000 - 20000);
        /* negative event times floor downwards, not towards zero */
        assert_int_equal(rill_window_start(-1, 60000), -60000);
        assert_int_equal(rill_window_start(-60000, 60000), -60000);
}

static void closed_at_end_plus_grace(void **s) {
        (void)s;
        /* window [0, 60000), grace 10000: closes at stream time 70000 */
        assert_false(rill_window_closed(0, 60000, 10000, 69999));
        assert_true(rill_window_closed(0, 60000, 10000, 70000));
        assert_false(rill_window_closed(0, 60000, 0, 59999));
        assert_true(rill_window_closed(0, 60000, 0, 60000));
}

static void close_bound_matches_closed(void **s) {
        (void)s;
        /* every start below the bound is closed, the bound itself is open */
        for (int64_t st = -200000; st < 400000; st += 777) {
                int64_t b = rill_window_close_bound(60000, 60000, 10000, st);
                assert_int_equal(b % 60000, 0);
                assert_true(rill_window_closed(b - 60000, 60000, 10000, st));
                assert_false(rill_window_closed(b, 60000, 10000, st));
        }
}

/* Hopping windows (size 10 s, a new one every 4 s): an event belongs to
 * every window with ts - size < start <= ts, starts multiples of 4 s; the
 * close bound steps by the advance. Checked against brute force. */
static void hopping_windows_hold_every_event_once_per_window(void **s) {
        (void)s;
        const int64_t size = 10000, adv = 4000, grace = 2000;
        for (int64_t ts = -30001; ts < 30000; ts += 333) {
                int64_t first = rill_window_first_start(ts, size, adv);
                int64_t last = rill_window_start(ts, adv);
                int n = 0;
                for (int64_t st = -60000; st <= 60000; st += adv)
                        if (st <= ts && ts < st + size) {
                                assert_true(st >= first && st <= last);
                                n++;
                        }
                assert_int_equal(n, (int)((last - first) / adv) + 1);
                assert_true(n == 2 || n == 3);
        }
        for (int64_t st = -50000; st < 50000; st += 777) {
                int64_t b = rill_window_close_bound(size, adv, grace, st);
                assert_int_equal(b % adv, 0);
                assert_true(rill_window_closed(b - adv, size, grace, st));
                assert_false(rill_window_closed(b, size, grace, st));
        }
}

static void iso8601(void **s) {
        (void)s;
        char buf[40];
        rill_iso8601(0, buf, sizeof(buf));
        assert_string_equal(buf, "1970-01-01T00:00:00Z");
        rill_iso8601(1763932140000, buf, sizeof(buf));
        assert_string_equal(buf, "2025-11-23T21:09:00Z");
        rill_iso8601(1500, buf, sizeof(buf));
        assert_string_equal(buf, "1970-01-01T00:00:01.500Z");
        rill_iso8601(-1, buf, sizeof(buf));
        assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
}

/* At the ends of int64 the arithmetic saturates instead of overflowing
 * (undefined behaviour: run under -fsanitize=undefined to see it). */
static void extremes_do_not_overflow(void **s) {
        (void)s;
        int64_t top = rill_window_start(INT64_MAX, 60000);
        assert_true(top <= INT64_MAX && top > INT64_MAX - 60000);
        /* its end + grace is beyond int64: it never closes */
        assert_false(rill_window_closed(top, 60000, 10000, INT64_MAX));
        assert_false(rill_window_closed(INT64_MAX, 1, 0, INT64_MAX));
        /* stream time at the top closes everything below the top window */
        int64_t b = rill_window_close_bound(60000, 60000, 10000, INT64_MAX);
        assert_true(b <= top);
        assert_true(rill_window_closed(b - 60000, 60000, 10000, INT64_MAX));
        /* the floor of INT64_MIN is below int64: clamped, never above ts */
        assert_true(rill_window_start(INT64_MIN, 60000) == INT64_MIN);
        assert_true(rill_window_start(INT64_MIN + 1, 60000) <= INT64_MIN + 1);
        /* stream time at the bottom closes nothing */
        assert_true(rill_window_close_bound(60000, 60000, 10000, INT64_MIN + 5) == INT64_MIN);
        assert_true(rill_window_close_bound(31622400000LL, 31622400000LL, 31622400000LL, INT64_MIN) == INT64_MIN);
        assert_false(rill_window_closed(INT64_MIN, 60000, 10000, INT64_MIN + 5));
}

/* The absolute event time range, with the largest window and grace: the
 * arithmetic stays exact and every window key sorts below the store's meta
 * keys (0xff...). */
static void event_time_bounds(void **s) {
        (void)s;
        char buf[40];
        rill_iso8601(RILL_EVENT_TIME_MAX_MS, buf, sizeof(buf));
        assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
        rill_iso8601(RILL_EVENT_TIME_MIN_MS, buf, sizeof(buf));
        assert_string_equal(buf, "0001-01-01T00:00:00Z");
        assert_true(rill_event_time_valid(RILL_EVENT_TIME_MAX_MS));
        assert_false(rill_event_time_valid(RILL_EVENT_TIME_MAX_MS + 1));
        assert_true(rill_event_time_valid(RILL_EVENT_TIME_MIN_MS));
        assert_false(rill_event_time_valid(RILL_EVENT_TIME_MIN_MS - 1));
        assert_false(rill_event_time_valid(INT64_MAX));
        assert_false(rill_event_time_valid(INT64_MIN));
        int64_t size = RILL_WINDOW_SIZE_MAX_MS, grace = RILL_GRACE_MAX_MS;
        int64_t top = rill_window_start(RILL_EVENT_TIME_MAX_MS, size);
        assert_true(top <= RILL_EVENT_TIME_MAX_MS && top + size > RILL_EVENT_TIME_MAX_MS);
        assert_false(rill_window_closed(top, size, grace, top + size + grace - 1));
        assert_true(rill_window_closed(top, size, grace, top + size + grace));
        unsigned char k[RILL_WKEY_HDR + 1];
        rill_wkey_encode(top + size + grace, "k", 1, k);
        assert_true(k[0] < 0xff);
        int64_t bottom = rill_window_start(RILL_EVENT_TIME_MIN_MS, size);
        assert_true(bottom <= RILL_EVENT_TIME_MIN_MS);
        assert_int_equal(rill_window_close_bound(size, size, grace, RILL_EVENT_TIME_MIN_MS) % size, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(window_start_floors), cmocka_unit_test(closed_at_end_plus_grace),
            cmocka_unit_test(close_bound_matches_closed),
            cmocka_unit_test(hopping_windows_hold_every_event_once_per_window),
            cmocka_unit_test(iso8601),
            cmocka_unit_test(extremes_do_not_overflow), cmocka_unit_test(event_time_bounds)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
