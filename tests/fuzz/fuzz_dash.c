/* libFuzzer target: what `salesctl serve` reads from outside
 * (apps/dashboard/dash.c): the request router, fed any method and URL, and
 * the parsers of the workers' /metrics and /query answers, fed any bytes.
 *
 * Input: byte 0 chooses what is fuzzed (mod 3): 0 the router (the rest
 * split at the first NUL into method and URL; byte 1 bit 0: a request body
 * was announced), 1 the /metrics parser, 2 the /query parser. The bytes are
 * copied into a buffer of their exact size, so a read past the given length
 * is an ASan error. Checked: the router answers one of its statuses with a
 * body of the length it says, serves an asset only for its exact path and
 * copies the snapshot only for a GET/HEAD of /api/state; the metrics parser
 * zeroes its output when it finds nothing; the /query parser returns the
 * window with the largest integer start, as jansson reads it.
 */
#include "dash.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                              \
        do {                                                                                  \
                if (!(c)) {                                                                   \
                        fprintf(stderr, "fuzz_dash: check failed: %s (line %d)\n", #c, __LINE__); \
                        abort();                                                              \
                }                                                                             \
        } while (0)

static const unsigned char page[] = "<html>", script[] = "export {}";
static const dash_asset_t assets[] = {
        {"/index.html", "text/html", page, sizeof(page) - 1},
        {"/dashboard.js", "text/javascript", script, sizeof(script) - 1},
};

static int snapshots;
static char *snap(void *o, size_t *len) {
        (void)o;
        snapshots++;
        *len = 3;
        return strdup("{}\n");
}

static void fuzz_route(const uint8_t *d, size_t n) {
        if (n < 1)
                return;
        size_t body = d[0] & 1;
        d++, n--;
        /* method NUL url (both NUL-terminated C strings, as libmicrohttpd gives them) */
        char *buf = malloc(n + 2);
        memcpy(buf, d, n);
        buf[n] = '\0', buf[n + 1] = '\0';
        const char *method = buf, *url = buf + strlen(buf) + 1; /* no NUL: the empty URL */
        dash_reply_t r;
        snapshots = 0;
        dash_route(method, url, body, assets, 2, snap, NULL, &r);
        int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        CHECK(r.body != NULL && r.type != NULL && r.cache != NULL);
        CHECK(r.status == 200 || r.status == 404 || r.status == 405 || r.status == 413 || r.status == 414);
        if (!get)
                CHECK(r.status == 405);
        if (r.status == 200) {
                CHECK(get && !body && strlen(url) <= DASH_URL_MAX);
                if (r.owned) {
                        CHECK(!strcmp(url, "/api/state") && snapshots == 1 && r.len == 3);
                        free((void *)r.body);
                } else if (r.body == page)
                        CHECK((!strcmp(url, "/") || !strcmp(url, "/index.html")) && r.len == 6);
                else if (r.body == script)
                        CHECK(!strcmp(url, "/dashboard.js"));
                else
                        CHECK(!strcmp(url, "/healthz"));
        } else {
                CHECK(!r.owned && snapshots == 0 && r.len == strlen(r.body));
        }
        free(buf);
}

static void fuzz_metrics(const uint8_t *d, size_t n) {
        char *text = malloc(n ? n : 1);
        memcpy(text, d, n);
        dash_metrics_t m;
        int rc = dash_metrics_parse(text, n, &m);
        CHECK(rc == 0 || rc == -1);
        CHECK(m.found >= 0 && m.found <= 4);
        if (rc)
                CHECK(!m.found && !m.processed && !m.results && !m.lag && !m.dead);
        else
                CHECK(m.found > 0);
        free(text);
}

static void fuzz_query(const uint8_t *d, size_t n) {
        char *body = malloc(n ? n : 1);
        memcpy(body, d, n);
        dash_open_t o;
        int rc = dash_query_parse(body, n, &o);
        json_t *j = json_loadb(body, n, 0, NULL), *ws = json_object_get(j, "windows"), *x;
        CHECK(rc == (json_is_array(ws) ? rc : -1));
        if (json_is_array(ws)) {
                int any = 0;
                json_int_t best = 0;
                size_t i;
                json_array_foreach(ws, i, x) {
                        json_t *st = json_object_get(x, "window_start_ms");
                        if (json_is_integer(st) && (!any || json_integer_value(st) > best))
                                best = json_integer_value(st), any = 1;
                }
                CHECK(rc == any);
                if (any)
                        CHECK(o.start_ms == best);
        }
        json_decref(j);
        free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        switch (data[0] % 3) {
        case 0:
                fuzz_route(data + 1, size - 1);
                break;
        case 1:
                fuzz_metrics(data + 1, size - 1);
                break;
        default:
                fuzz_query(data + 1, size - 1);
        }
        return 0;
}
