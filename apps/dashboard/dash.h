/*
 * dash.h -- the pure parts of `salesctl serve` (the web dashboard): the
 * request router and the parsers of what the workers answer. Nothing here
 * opens a socket, reads a clock or touches shared state, so all of it is
 * unit-tested (tests/unit/test_dash.c) and fuzzed (tests/fuzz/fuzz_dash.c)
 * without a server; apps/salesctl_serve.c wires it to libmicrohttpd, libpq
 * and libcurl.
 *
 * Every input is bounded: a URL longer than DASH_URL_MAX is answered 414, a
 * request with a body 413, a method other than GET/HEAD 405; the parsers read
 * at most the length they are given (no NUL terminator needed) and never
 * more than DASH_METRICS_LINES_MAX lines or DASH_QUERY_BODY_MAX bytes.
 *
 * @locality any thread; no shared state.
 */
#ifndef SALES_DASH_H
#define SALES_DASH_H
#include <stddef.h>

#define DASH_URL_MAX 1024                 /* longest request path answered */
#define DASH_METRICS_LINES_MAX 200000     /* lines of one /metrics body parsed */
#define DASH_QUERY_BODY_MAX (1024 * 1024) /* a /query answer (the worker's own cap) */

/* ---- the router -------------------------------------------------------------------- */

/** One file of the front end, served from memory. */
typedef struct dash_asset {
        const char *path; /* "/index.html" */
        const char *type; /* Content-Type */
        const unsigned char *data;
        size_t len;
} dash_asset_t;

/** The current state as JSON (the collector's last snapshot): a copy the
 *  caller frees, its length in *len; NULL when there is none yet. */
typedef char *(*dash_snapshot_fn)(void *opaque, size_t *len);

/** What to answer. body is static (an asset or a message) unless owned. */
typedef struct dash_reply {
        int status;
        const char *type;
        const char *cache; /* Cache-Control */
        const void *body;
        size_t len;
        int owned; /* body is malloc'd: the caller frees it */
} dash_reply_t;

/** Route one request:
 *    GET|HEAD /               the asset "/index.html"
 *    GET|HEAD /<asset path>   that asset (exact match)
 *    GET|HEAD /api/state      the snapshot (503 until the first one)
 *    GET|HEAD /healthz        "ok"
 *  405 other methods, 413 a request body (upload_len > 0), 414 a URL longer
 *  than DASH_URL_MAX, 404 anything else. method and url are NUL-terminated
 *  (libmicrohttpd gives them so); a NULL one is a 400. */
void dash_route(const char *method, const char *url, size_t upload_len, const dash_asset_t *assets,
                size_t nassets, dash_snapshot_fn snapshot, void *opaque, dash_reply_t *out);

/* ---- what the workers answer ------------------------------------------------------- */

/** The families of a worker's /metrics the dashboard shows, each summed over
 *  its series. found counts the families present (0: not rill's metrics). */
typedef struct dash_metrics {
        long long processed, results, lag, dead;
        int found;
} dash_metrics_t;

/** Parse a Prometheus text body of len bytes. @returns 0, -1 when it holds
 *  none of the families (out is zeroed then). A value that is not a number
 *  counts as 0; sums saturate instead of overflowing. */
int dash_metrics_parse(const char *text, size_t len, dash_metrics_t *out);

/** The newest open window in a worker's /query answer. */
typedef struct dash_open {
        long long start_ms, end_ms, sum, count;
} dash_open_t;

/** Parse a /query answer of len bytes. @returns 1 with *out set when it
 *  lists a window, 0 when it lists none, -1 when it is not such an answer
 *  (not JSON, no "windows" array, longer than DASH_QUERY_BODY_MAX). */
int dash_query_parse(const char *body, size_t len, dash_open_t *out);

#endif
