/* libFuzzer target: the sales event parser (apps/sales/event.c and its fast
 * path apps/sales/fastscan.c).
 *
 * Input: byte 0 sets the parse configuration (bit 0: sale_ts in
 * milliseconds; bits 1-7: seller_id limit, 1..128 bytes, or SALES_KEY_MAX
 * when 0), the rest is the record value. Time bounds are off so the result
 * does not depend on the clock. Checked on every input: the fast path, when
 * it accepts, extracts exactly what jansson does; sales_extract (fast path,
 * then jansson) and sales_extract_full agree on acceptance, values and the
 * reject reason; an accepted event's key is within the limit, and its
 * formatted result is valid JSON carrying the same seller_id.
 */
#include "event.h"
#include "fastscan.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                              \
        do {                                                                                  \
                if (!(c)) {                                                                   \
                        fprintf(stderr, "fuzz_sales_event: check failed: %s (line %d)\n", #c, \
                                __LINE__);                                                    \
                        abort();                                                              \
                }                                                                             \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        sales_parse_conf_t pc = {data[0] & 1, 0, 0, (size_t)(data[0] >> 1)};
        if (!pc.key_max)
                pc.key_max = SALES_KEY_MAX;
        /* an exact-size copy, so ASan sees any read past the record */
        size_t len = size - 1;
        char *rec = malloc(len ? len : 1);
        memcpy(rec, data + 1, len);
        rill_raw_t raw = {NULL, 0, rec, len, "sales-usd", 0, 0, 1700000000000};

        rill_event_t full, ev;
        rill_reject_t rfull, rev;
        memset(&rfull, 0, sizeof(rfull));
        memset(&rev, 0, sizeof(rev));
        int rc_full = sales_extract_full(&pc, &raw, &full, &rfull);
        char full_key[SALES_KEY_MAX];
        size_t full_key_len = rc_full == 0 ? full.key_len : 0;
        if (rc_full == 0) {
                CHECK(full.key_len >= 1 && full.key_len <= pc.key_max);
                memcpy(full_key, full.key, full.key_len); /* the scratch is reused below */
        } else {
                CHECK(rfull.reason[0] && memchr(rfull.reason, 0, sizeof(rfull.reason)));
                CHECK(memchr(rfull.detail, 0, sizeof(rfull.detail)));
        }

        sales_fields_t f;
        if (sales_fastscan(rec, len, pc.key_max, &f)) {
                int64_t ts_ms = f.ts;
                CHECK(f.key >= rec && f.key + f.key_len <= rec + len);
                if (pc.ts_millis || !__builtin_mul_overflow(f.ts, 1000, &ts_ms)) {
                        /* the scan only finds the fields; the time checks that
                         * follow it (years 1..9999, the limits) are shared with
                         * the full parser, so a rejection there is the same */
                        CHECK(rc_full == 0 || !strcmp(rfull.reason, "invalid_timestamp"));
                        if (rc_full == 0) {
                                CHECK(f.key_len == full_key_len &&
                                      !memcmp(f.key, full_key, f.key_len));
                                CHECK(f.amount == full.value);
                                CHECK(ts_ms == full.ts_ms);
                        }
                }
        }

        int rc = sales_extract(&pc, &raw, &ev, &rev);
        CHECK(rc == rc_full);
        if (rc == 0) {
                CHECK(ev.key_len == full_key_len && !memcmp(ev.key, full_key, ev.key_len));
                CHECK(ev.value == full.value && ev.ts_ms == full.ts_ms);
                static rill_aggregator_t *agg;
                char err[256];
                if (!agg)
                        agg = rill_aggregator_fields_new(sales_fields, SALES_FIGURES, err,
                                                         sizeof(err));
                CHECK(agg != NULL);
                int64_t st[SALES_FIGURES] = {ev.value, 1, ev.ts_ms, ev.ts_ms};
                rill_result_t res = {ev.key, ev.key_len, ev.ts_ms, ev.ts_ms + 60000, st, agg};
                char out[8 * SALES_KEY_MAX];
                size_t n = sales_format(NULL, &res, out, sizeof(out));
                CHECK(n > 0 && n < sizeof(out));
                json_error_t e;
                json_t *j = json_loadb(out, n, 0, &e);
                if (!j) {
                        fprintf(stderr, "fuzz_sales_event: result is not JSON: %s: %.*s\n", e.text,
                                (int)n, out);
                        abort();
                }
                json_t *k = json_object_get(j, "seller_id");
                CHECK(json_string_length(k) == ev.key_len &&
                      !memcmp(json_string_value(k), ev.key, ev.key_len));
                json_decref(j);
        } else {
                CHECK(!strcmp(rev.reason, rfull.reason));
        }
        free(rec);
        return 0;
}
