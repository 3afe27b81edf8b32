/* Unit tests: the web dashboard's router and the parsers of what the workers
 * answer (apps/dashboard/dash.c): every route and refusal of dash_route, the
 * /metrics sums (labels holding '}', values that are not numbers, families
 * that only share a prefix, a body without a terminator, saturation) and
 * the newest open window of a /query answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "dash.h"

/* ---- dash_route ------------------------------------------------------------------ */

static const unsigned char html[] = "<html>", js[] = "export {}";
static const dash_asset_t assets[] = {
        {"/index.html", "text/html; charset=utf-8", html, sizeof(html) - 1},
        {"/dashboard.js", "text/javascript; charset=utf-8", js, sizeof(js) - 1},
};

static char *snap_none(void *o, size_t *len) {
        (void)o, (void)len;
        return NULL;
}

static char *snap_some(void *o, size_t *len) {
        (*(int *)o)++;
        *len = 8;
        return strdup("{\"a\":1}\n");
}

static int route(const char *method, const char *url, size_t body, dash_snapshot_fn fn, void *o, dash_reply_t *r) {
        dash_route(method, url, body, assets, 2, fn, o, r);
        return r->status;
}

static void route_serves_assets_and_the_page_at_root(void **s) {
        (void)s;
        dash_reply_t r;
        assert_int_equal(route("GET", "/", 0, snap_none, NULL, &r), 200);
        assert_ptr_equal(r.body, html);
        assert_int_equal(r.len, 6);
        assert_string_equal(r.type, "text/html; charset=utf-8");
        assert_false(r.owned);
        assert_int_equal(route("HEAD", "/dashboard.js", 0, snap_none, NULL, &r), 200);
        assert_ptr_equal(r.body, js);
        assert_int_equal(route("GET", "/index.html", 0, snap_none, NULL, &r), 200);
        /* exact paths only: nothing else is a file */
        assert_int_equal(route("GET", "/dashboard.js/", 0, snap_none, NULL, &r), 404);
        assert_int_equal(route("GET", "/../index.html", 0, snap_none, NULL, &r), 404);
        assert_int_equal(route("GET", "", 0, snap_none, NULL, &r), 404);
        assert_int_equal(route("GET", "/healthz", 0, snap_none, NULL, &r), 200);
}

static void route_api_state_copies_the_snapshot_or_says_not_yet(void **s) {
        (void)s;
        dash_reply_t r;
        int calls = 0;
        assert_int_equal(route("GET", "/api/state", 0, snap_none, NULL, &r), 503);
        assert_string_equal(r.type, "application/json");
        assert_false(r.owned);
        assert_int_equal(route("GET", "/api/state", 0, NULL, NULL, &r), 503);
        assert_int_equal(route("GET", "/api/state", 0, snap_some, &calls, &r), 200);
        assert_int_equal(calls, 1);
        assert_true(r.owned);
        assert_int_equal(r.len, 8);
        assert_memory_equal(r.body, "{\"a\":1}\n", 8);
        assert_string_equal(r.cache, "no-store");
        free((void *)r.body);
}

static void route_refuses_methods_bodies_and_long_urls(void **s) {
        (void)s;
        dash_reply_t r;
        int calls = 0;
        assert_int_equal(route("POST", "/api/state", 0, snap_some, &calls, &r), 405);
        assert_int_equal(route("get", "/", 0, snap_some, &calls, &r), 405);
        assert_int_equal(route("GET", "/api/state", 1, snap_some, &calls, &r), 413);
        assert_int_equal(route(NULL, "/", 0, snap_some, &calls, &r), 400);
        assert_int_equal(route("GET", NULL, 0, snap_some, &calls, &r), 400);
        assert_int_equal(calls, 0); /* the snapshot is never copied for a refusal */
        char url[DASH_URL_MAX + 2];
        memset(url, 'a', sizeof(url));
        url[0] = '/';
        url[DASH_URL_MAX + 1] = '\0';
        assert_int_equal(route("GET", url, 0, snap_some, &calls, &r), 414);
        url[DASH_URL_MAX] = '\0'; /* exactly the limit: routed (not found) */
        assert_int_equal(route("GET", url, 0, snap_some, &calls, &r), 404);
        assert_non_null(r.body);
        assert_int_equal(r.len, strlen(r.body));
}

/* ---- dash_metrics_parse ---------------------------------------------------------- */

static const char metrics[] =
        "# HELP rill_records_processed_total Records consumed and processed\n"
        "# TYPE rill_records_processed_total counter\n"
        "rill_records_processed_total{thread=\"0\"} 120\n"
        "rill_records_processed_total{thread=\"1\"} 30\n"
        "rill_records_processed_total_extra 1000\n" /* another family */
        "rill_window_results_total{thread=\"0\"} 7\n"
        "rill_records_dead_lettered_total{thread=\"0\"} 3\n"
        "rill_consumer_lag{thread=\"0\",topic=\"a}b\",partition=\"0\",task=\"source\"} 5\n"
        "rill_consumer_lag{thread=\"0\",topic=\"q\\\"}\",partition=\"1\",task=\"source\"} 1.5e1\n"
        "rill_consumer_lag{thread=\"0\"} NaN\n"
        "rill_consumer_lag{thread=\"0\"} +Inf\n"
        "rill_consumer_lag{thread=\"0\"} junk\n";

static void metrics_sums_each_family_over_its_series(void **s) {
        (void)s;
        dash_metrics_t m;
        assert_int_equal(dash_metrics_parse(metrics, strlen(metrics), &m), 0);
        assert_int_equal(m.processed, 150);
        assert_int_equal(m.results, 7);
        assert_int_equal(m.dead, 3);
        assert_int_equal(m.lag, 20); /* 5 + 15; NaN, Inf and junk count 0 */
        assert_int_equal(m.found, 4);
}

static void metrics_reads_only_its_length_and_needs_a_family(void **s) {
        (void)s;
        dash_metrics_t m;
        const char *t = "rill_window_results_total 4\nrill_window_results_total 5\n";
        /* the length ends inside the second sample's name: only the first counts */
        assert_int_equal(dash_metrics_parse(t, 32, &m), 0);
        assert_int_equal(m.results, 4);
        assert_int_equal(m.found, 1);
        assert_int_equal(dash_metrics_parse("up 1\n# rill_consumer_lag 5\n", 27, &m), -1);
        assert_int_equal(m.lag, 0);
        assert_int_equal(dash_metrics_parse(NULL, 10, &m), -1);
        assert_int_equal(dash_metrics_parse("", 0, &m), -1);
        /* labels that never close are not a sample */
        assert_int_equal(dash_metrics_parse("rill_consumer_lag{a=\"}", 22, &m), -1);
        const char *big = "rill_consumer_lag 9e18\nrill_consumer_lag 9e18\nrill_consumer_lag -1e300\n";
        assert_int_equal(dash_metrics_parse(big, strlen(big), &m), 0);
        assert_true(m.lag < 9000000000000000000LL); /* saturated at LLONG_MAX, then LLONG_MIN added */
        const char *sat = "rill_consumer_lag 9e18\nrill_consumer_lag 9e18\n";
        assert_int_equal(dash_metrics_parse(sat, strlen(sat), &m), 0);
        assert_true(m.lag == LLONG_MAX);
}

/* ---- dash_query_parse ------------------------------------------------------------ */

static void query_takes_the_newest_open_window(void **s) {
        (void)s;
        dash_open_t o;
        const char *a = "{\"key\":\"k\",\"instance\":\"i\",\"windows\":["
                        "{\"partition\":0,\"window_start_ms\":20000,\"window_end_ms\":30000,\"sum\":5,\"count\":1},"
                        "{\"partition\":0,\"window_start_ms\":30000,\"window_end_ms\":40000,\"sum\":9,\"count\":2},"
                        "{\"partition\":0,\"window_start_ms\":10000,\"window_end_ms\":20000,\"sum\":1,\"count\":1}],"
                        "\"truncated\":false}\n";
        assert_int_equal(dash_query_parse(a, strlen(a), &o), 1);
        assert_int_equal(o.start_ms, 30000);
        assert_int_equal(o.end_ms, 40000);
        assert_int_equal(o.sum, 9);
        assert_int_equal(o.count, 2);
        const char *none = "{\"key\":\"k\",\"windows\":[],\"truncated\":false}";
        assert_int_equal(dash_query_parse(none, strlen(none), &o), 0);
        assert_int_equal(dash_query_parse("{\"error\":\"busy\"}", 16, &o), -1);
        assert_int_equal(dash_query_parse("{\"windows\":[", 12, &o), -1);
        assert_int_equal(dash_query_parse(NULL, 0, &o), -1);
        assert_int_equal(dash_query_parse(a, DASH_QUERY_BODY_MAX + 1, &o), -1); /* never read */
        const char *odd = "{\"windows\":[{\"window_start_ms\":\"x\"},7,{\"window_start_ms\":5}]}";
        assert_int_equal(dash_query_parse(odd, strlen(odd), &o), 1);
        assert_int_equal(o.start_ms, 5);
        assert_int_equal(o.sum, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(route_serves_assets_and_the_page_at_root),
                cmocka_unit_test(route_api_state_copies_the_snapshot_or_says_not_yet),
                cmocka_unit_test(route_refuses_methods_bodies_and_long_urls),
                cmocka_unit_test(metrics_sums_each_family_over_its_series),
                cmocka_unit_test(metrics_reads_only_its_length_and_needs_a_family),
                cmocka_unit_test(query_takes_the_newest_open_window),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
