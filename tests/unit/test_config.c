/* Unit tests: configuration validation and the flags > env > file order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "event.h"
#include "rill.h"

static char err[512];

static void defaults_and_validation(void **s) {
        (void)s;
        rill_conf_t *c = rill_conf_new(NULL);
        assert_int_equal(rill_conf_get_int(c, "window.size.ms"), 60000);
        assert_int_equal(rill_conf_get_int(c, "grace.ms"), 10000);
        assert_int_equal(rill_conf_get_int(c, "commit.interval.ms"), 100);
        assert_int_equal(rill_conf_set(c, "window.size.ms", "abc", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "window.size.ms"));
        assert_int_equal(rill_conf_set(c, "window.size.ms", "0", err, sizeof(err)), -1);
        assert_int_equal(rill_conf_set(c, "no.such.key", "1", err, sizeof(err)), -1);
        assert_int_equal(rill_conf_set(c, "input.keyed", "maybe", err, sizeof(err)), -1);
        assert_int_equal(rill_conf_set(c, "kafka.linger.ms", "7", err, sizeof(err)), 0);
        assert_string_equal(rill_conf_get(c, "kafka.linger.ms"), "7");
        rill_conf_destroy(c);
}

static void precedence_flags_env_file(void **s) {
        (void)s;
        char path[] = "/tmp/rill-conf-XXXXXX";
        int fd = mkstemp(path);
        FILE *fp = fdopen(fd, "w");
        fprintf(fp, "# comment\nwindow.size.ms = 1000\ngrace.ms=2000\ncommit.interval.ms=3000\n"
                    "kafka.linger.ms=9\n");
        fclose(fp);
        setenv("RILL_GRACE_MS", "2500", 1);
        setenv("RILL_COMMIT_INTERVAL_MS", "3500", 1);
        char *argv[] = {"prog", "--config", path, "--commit-interval-ms=4000", "--input-keyed",
                        "-X", "acks=all", NULL};
        rill_conf_t *c = rill_conf_new(NULL);
        assert_int_equal(rill_conf_load_args(c, 7, argv, err, sizeof(err)), 0);
        assert_int_equal(rill_conf_get_int(c, "window.size.ms"), 1000);     /* file */
        assert_int_equal(rill_conf_get_int(c, "grace.ms"), 2500);           /* env > file */
        assert_int_equal(rill_conf_get_int(c, "commit.interval.ms"), 4000); /* flag > env */
        assert_true(rill_conf_get_bool(c, "input.keyed"));
        assert_string_equal(rill_conf_get(c, "kafka.acks"), "all");
        assert_string_equal(rill_conf_get(c, "kafka.linger.ms"), "9");
        rill_conf_destroy(c);
        unsetenv("RILL_GRACE_MS");
        unsetenv("RILL_COMMIT_INTERVAL_MS");
        remove(path);
}

static void bad_inputs_name_the_culprit(void **s) {
        (void)s;
        rill_conf_t *c = rill_conf_new(NULL);
        char *a1[] = {"prog", "--no-such-flag=1", NULL};
        assert_int_equal(rill_conf_load_args(c, 2, a1, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "--no-such-flag"));
        char *a2[] = {"prog", "--grace-ms", "-5", NULL};
        assert_int_equal(rill_conf_load_args(c, 3, a2, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "grace"));
        setenv("RILL_WINDOW_SIZE_MS", "ten", 1);
        char *a3[] = {"prog", NULL};
        assert_int_equal(rill_conf_load_args(c, 1, a3, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "RILL_WINDOW_SIZE_MS"));
        unsetenv("RILL_WINDOW_SIZE_MS");
        char *a4[] = {"prog", "--config", "/nonexistent/rill.conf", NULL};
        assert_int_equal(rill_conf_load_args(c, 3, a4, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "/nonexistent/rill.conf"));
        rill_conf_destroy(c);
}

/* The time properties are bounded, so window end + grace of any accepted
 * event time stays far inside int64 (engine/window.h): out of range is
 * refused with one line naming the key and the range. */
static void time_ranges_one_line_errors(void **s) {
        (void)s;
        rill_conf_t *c = rill_conf_new(sales_confdefs);
        static const struct {
                const char *key, *value;
                int ok;
        } cases[] = {
            {"window.size.ms", "31622400000", 1}, {"window.size.ms", "31622400001", 0},
            {"window.size.ms", "-1", 0},          {"window.size.ms", "9223372036854775807", 0},
            {"window.size.ms", "9223372036854775808", 0},
            {"grace.ms", "0", 1},                 {"grace.ms", "31622400000", 1},
            {"grace.ms", "31622400001", 0},       {"grace.ms", "-1", 0},
            {"max.future.ms", "0", 1},            {"max.future.ms", "316224000000", 1},
            {"max.future.ms", "316224000001", 0}, {"max.future.ms", "-9223372036854775808", 0},
            {"max.past.ms", "3162240000001", 0},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                err[0] = '\0';
                int rc = rill_conf_set(c, cases[i].key, cases[i].value, err, sizeof(err));
                if (cases[i].ok) {
                        if (rc)
                                fail_msg("%s=%s refused: %s", cases[i].key, cases[i].value, err);
                        continue;
                }
                if (rc != -1)
                        fail_msg("%s=%s accepted", cases[i].key, cases[i].value);
                assert_non_null(strstr(err, cases[i].key));
                assert_null(strchr(err, '\n'));
        }
        /* and a refused value leaves the previous one */
        assert_int_equal(rill_conf_get_int(c, "grace.ms"), 31622400000LL);
        rill_conf_destroy(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(defaults_and_validation),
                                           cmocka_unit_test(precedence_flags_env_file),
                                           cmocka_unit_test(bad_inputs_name_the_culprit),
                                           cmocka_unit_test(time_ranges_one_line_errors)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
