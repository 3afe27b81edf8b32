/* Unit tests: tumbling window arithmetic and ISO-8601 formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
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
                int64_t b = rill_window_close_bound(60000, 10000, st);
                assert_int_equal(b % 60000, 0);
                assert_true(rill_window_closed(b - 60000, 60000, 10000, st));
                assert_false(rill_window_closed(b, 60000, 10000, st));
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

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(window_start_floors), cmocka_unit_test(closed_at_end_plus_grace),
            cmocka_unit_test(close_bound_matches_closed), cmocka_unit_test(iso8601)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
