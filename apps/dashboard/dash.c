/*
 * dash.c -- the router and the worker-answer parsers of the web dashboard
 * (see dash.h for the contract). Written to be read by a fuzzer: every loop
 * is bounded by the length it was given, numbers are parsed from a bounded
 * copy, and the router answers only from fixed tables.
 */
#include "dash.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the router -------------------------------------------------------------------- */

static void text(dash_reply_t *o, int status, const char *msg) {
        o->status = status;
        o->type = "text/plain; charset=utf-8";
        o->cache = "no-store";
        o->body = msg;
        o->len = strlen(msg);
        o->owned = 0;
}

static void asset(dash_reply_t *o, const dash_asset_t *a) {
        o->status = 200;
        o->type = a->type;
        o->cache = "no-cache"; /* revalidate: a rebuilt salesctl serves new files */
        o->body = a->data;
        o->len = a->len;
}

static const dash_asset_t *find_asset(const char *url, const dash_asset_t *assets, size_t nassets) {
        const char *want = !strcmp(url, "/") ? "/index.html" : url;
        for (size_t i = 0; i < nassets; i++)
                if (!strcmp(assets[i].path, want))
                        return &assets[i];
        return NULL;
}

void dash_route(const char *method, const char *url, size_t upload_len, const dash_asset_t *assets,
                size_t nassets, dash_snapshot_fn snapshot, void *opaque, dash_reply_t *out) {
        const dash_asset_t *a;
        memset(out, 0, sizeof(*out));
        if (!method || !url)
                text(out, 400, "bad request\n");
        else if (strcmp(method, "GET") && strcmp(method, "HEAD"))
                text(out, 405, "only GET and HEAD\n");
        else if (upload_len > 0)
                text(out, 413, "a GET has no body\n");
        else if (strnlen(url, DASH_URL_MAX + 1) > DASH_URL_MAX)
                text(out, 414, "URL too long\n");
        else if (!strcmp(url, "/healthz"))
                text(out, 200, "ok\n");
        else if (!strcmp(url, "/api/state")) {
                size_t len = 0;
                char *s = snapshot ? snapshot(opaque, &len) : NULL;
                if (s) {
                        out->status = 200;
                        out->body = s, out->len = len, out->owned = 1;
                        out->cache = "no-store";
                } else
                        text(out, 503, "{\"error\":\"no data collected yet, retry in a second\"}\n");
                out->type = "application/json";
        } else if ((a = find_asset(url, assets, nassets)))
                asset(out, a);
        else
                text(out, 404, "not found: the dashboard is at /, its data at /api/state\n");
}

/* ---- /metrics ----------------------------------------------------------------------- */

static const char *const families[] = {"rill_records_processed_total", "rill_window_results_total",
                                       "rill_consumer_lag", "rill_records_dead_lettered_total"};

static long long sat_add(long long a, long long b) {
        if (b > 0 && a > LLONG_MAX - b)
                return LLONG_MAX;
        if (b < 0 && a < LLONG_MIN - b)
                return LLONG_MIN;
        return a + b;
}

/* The sample value at p[0..n): a number, or 0. */
static long long value(const char *p, size_t n) {
        char buf[64];
        while (n && (*p == ' ' || *p == '\t'))
                p++, n--;
        size_t k = 0;
        while (k < n && k < sizeof(buf) - 1 && p[k] != ' ' && p[k] != '\t' && p[k] != '\r')
                k++;
        memcpy(buf, p, k);
        buf[k] = '\0';
        char *end;
        double v = strtod(buf, &end);
        if (end == buf || *end || !isfinite(v))
                return 0;
        if (v >= 9.2e18)
                return LLONG_MAX;
        if (v <= -9.2e18)
                return LLONG_MIN;
        return (long long)v;
}

int dash_metrics_parse(const char *text, size_t len, dash_metrics_t *out) {
        memset(out, 0, sizeof(*out));
        long long *sums[] = {&out->processed, &out->results, &out->lag, &out->dead};
        int seen[4] = {0};
        size_t lines = 0;
        for (size_t at = 0; text && at < len && lines < DASH_METRICS_LINES_MAX; lines++) {
                const char *line = text + at;
                const char *nl = memchr(line, '\n', len - at);
                size_t n = nl ? (size_t)(nl - line) : len - at;
                at += n + 1;
                if (!n || line[0] == '#')
                        continue;
                for (int f = 0; f < 4; f++) {
                        size_t fl = strlen(families[f]);
                        if (n <= fl || memcmp(line, families[f], fl) || (line[fl] != '{' && line[fl] != ' '))
                                continue;
                        size_t v = fl;
                        if (line[fl] == '{') { /* skip the labels; a quoted value may hold '}' */
                                int quoted = 0;
                                for (v = fl + 1; v < n; v++) {
                                        if (quoted && line[v] == '\\')
                                                v++;
                                        else if (line[v] == '"')
                                                quoted = !quoted;
                                        else if (!quoted && line[v] == '}')
                                                break;
                                }
                                if (v >= n)
                                        break; /* unterminated labels: not a sample */
                                v++;
                        }
                        *sums[f] = sat_add(*sums[f], value(line + v, n - v));
                        seen[f] = 1;
                        break;
                }
        }
        out->found = seen[0] + seen[1] + seen[2] + seen[3];
        if (!out->found) {
                memset(out, 0, sizeof(*out));
                return -1;
        }
        return 0;
}

/* ---- /query -------------------------------------------------------------------------- */

int dash_query_parse(const char *body, size_t len, dash_open_t *out) {
        memset(out, 0, sizeof(*out));
        if (!body || len > DASH_QUERY_BODY_MAX)
                return -1;
        json_t *d = json_loadb(body, len, 0, NULL);
        json_t *ws = json_object_get(d, "windows"), *x;
        if (!json_is_array(ws)) {
                json_decref(d);
                return -1;
        }
        int found = 0;
        size_t i;
        json_array_foreach(ws, i, x) {
                json_t *st = json_object_get(x, "window_start_ms");
                if (!json_is_integer(st))
                        continue;
                long long s = json_integer_value(st);
                if (!found || s > out->start_ms) { /* the newest open window */
                        out->start_ms = s;
                        out->end_ms = json_integer_value(json_object_get(x, "window_end_ms"));
                        out->sum = json_integer_value(json_object_get(x, "sum"));
                        out->count = json_integer_value(json_object_get(x, "count"));
                        found = 1;
                }
        }
        json_decref(d);
        return found;
}
