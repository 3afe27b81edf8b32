/*
 * event.c -- sales events in and window results out: a fast path for the
 * common flat record (fastscan.c), jansson for everything else. Every way an input can be wrong maps to one short reason that
 * travels to the dead-letter topic with a detail naming the value.
 */
#include "event.h"
#include "fastscan.h"
#include "json.h"
#include "window.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const rill_confdef_t sales_confdefs[] = {
    {"timestamp.unit", RILL_CONF_STR, "s", 0, 0, "Unit of sale_ts: s (epoch seconds) or ms"},
    {"max.future.ms", RILL_CONF_INT, "3600000", 0, 10LL * 366 * 86400000,
     "Reject events whose sale_ts is further ahead of wall-clock time (0 = no limit; "
     "after year 9999 is always rejected)"},
    {"max.past.ms", RILL_CONF_INT, "0", 0, 100LL * 366 * 86400000,
     "Reject events whose sale_ts is further behind wall-clock time (0 = no limit)"},
    {"seller.id.max.bytes", RILL_CONF_INT, "256", 1, SALES_KEY_MAX - 1,
     "Longest accepted seller_id, in bytes"},
    {NULL, 0, NULL, 0, 0, NULL}};

static _Thread_local sales_scratch_t scratch;

#define REJECT(r, d, ...)                                                                    \
        do {                                                                                 \
                snprintf(rej->reason, sizeof(rej->reason), "%s", r);                         \
                snprintf(rej->detail, sizeof(rej->detail), d, __VA_ARGS__);                  \
                goto reject;                                                                 \
        } while (0)

static const char *type_name(json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT: return "object";
        case JSON_ARRAY: return "array";
        case JSON_STRING: return "string";
        case JSON_INTEGER: return "integer";
        case JSON_REAL: return "number with a fraction";
        case JSON_TRUE:
        case JSON_FALSE: return "boolean";
        default: return "null";
        }
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define LATEST_ISO "9999-12-31T23:59:59.999Z" /* RILL_EVENT_TIME_MAX_MS */

/* The limits on event time, last of the checks in both paths: first the
 * absolute one, whatever max.future.ms says (0 included), so that no record
 * can push stream time towards the end of int64 (engine/window.h); then the
 * ones relative to the wall clock. */
static int check_time(const sales_parse_conf_t *pc, const rill_raw_t *raw, int64_t ts,
                      int64_t ts_ms, rill_reject_t *rej) {
        if (!rill_event_time_valid(ts_ms)) {
                snprintf(rej->reason, sizeof(rej->reason), "invalid_timestamp");
                snprintf(rej->detail, sizeof(rej->detail),
                         "sale_ts %lld is after %s, the latest accepted event time",
                         (long long)ts, LATEST_ISO);
                return -1;
        }
        int64_t now = raw->now_wall_ms ? raw->now_wall_ms : wall_ms();
        if (pc->max_future_ms && ts_ms > now + pc->max_future_ms) {
                snprintf(rej->reason, sizeof(rej->reason), "invalid_timestamp");
                snprintf(rej->detail, sizeof(rej->detail),
                         "sale_ts %lld is more than %lld ms in the future", (long long)ts,
                         (long long)pc->max_future_ms);
                return -1;
        }
        if (pc->max_past_ms && ts_ms < now - pc->max_past_ms) {
                snprintf(rej->reason, sizeof(rej->reason), "invalid_timestamp");
                snprintf(rej->detail, sizeof(rej->detail),
                         "sale_ts %lld is more than %lld ms in the past", (long long)ts,
                         (long long)pc->max_past_ms);
                return -1;
        }
        return 0;
}

int sales_extract(void *opaque, const rill_raw_t *raw, rill_event_t *ev, rill_reject_t *rej) {
        const sales_parse_conf_t *pc = opaque;
        sales_fields_t f;
        int64_t ts_ms;
        if (raw->value_len &&
            sales_fastscan(raw->value, raw->value_len, pc->key_max, &f) &&
            (pc->ts_millis ? (ts_ms = f.ts, 1) : !__builtin_mul_overflow(f.ts, 1000, &ts_ms))) {
                if (check_time(pc, raw, f.ts, ts_ms, rej))
                        return -1;
                ev->key = f.key; /* points into the record */
                ev->key_len = f.key_len;
                ev->value = f.amount;
                ev->ts_ms = ts_ms;
                return 0;
        }
        return sales_extract_full(opaque, raw, ev, rej);
}

int sales_extract_full(void *opaque, const rill_raw_t *raw, rill_event_t *ev,
                       rill_reject_t *rej) {
        const sales_parse_conf_t *pc = opaque;
        json_error_t jerr;
        json_t *doc = NULL, *v;
        if (!raw->value || !raw->value_len)
                REJECT("malformed_json", "%s", "empty record value");
        doc = json_loadb(raw->value, raw->value_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                int utf8 = strstr(jerr.text, "UTF-8") || strstr(jerr.text, "unable to decode byte");
                REJECT(utf8 ? "invalid_utf8" : "malformed_json", "%s at byte %d", jerr.text,
                       jerr.position);
        }
        if (!json_is_object(doc))
                REJECT("not_an_object", "expected a JSON object, got %s", type_name(doc));

        /* seller_id: a non-empty string of at most key_max bytes (valid UTF-8
         * and free of NUL is guaranteed by jansson) */
        if (!(v = json_object_get(doc, "seller_id")))
                REJECT("missing_field", "%s", "seller_id is missing");
        if (!json_is_string(v))
                REJECT("wrong_type", "seller_id must be a string, got %s", type_name(v));
        size_t klen = json_string_length(v);
        if (!klen)
                REJECT("invalid_seller_id", "%s", "seller_id is empty");
        if (klen > pc->key_max)
                REJECT("invalid_seller_id", "seller_id is %zu bytes, the limit is %zu", klen,
                       pc->key_max);
        memcpy(scratch.key, json_string_value(v), klen);

        /* amount_usd: a non-negative integer */
        if (!(v = json_object_get(doc, "amount_usd")))
                REJECT("missing_field", "%s", "amount_usd is missing");
        if (json_is_real(v))
                REJECT("invalid_amount", "amount_usd must be a whole number, got %g",
                       json_real_value(v));
        if (!json_is_integer(v))
                REJECT("wrong_type", "amount_usd must be an integer, got %s", type_name(v));
        json_int_t amount = json_integer_value(v);
        if (amount < 0)
                REJECT("invalid_amount", "amount_usd must not be negative, got %lld",
                       (long long)amount);

        /* sale_ts: epoch seconds (or ms), within the accepted range */
        if (!(v = json_object_get(doc, "sale_ts")))
                REJECT("missing_field", "%s", "sale_ts is missing");
        if (json_is_real(v))
                REJECT("invalid_timestamp", "sale_ts must be a whole number, got %g",
                       json_real_value(v));
        if (!json_is_integer(v))
                REJECT("wrong_type", "sale_ts must be an integer, got %s", type_name(v));
        json_int_t ts = json_integer_value(v);
        int64_t ts_ms;
        if (ts < 0)
                REJECT("invalid_timestamp", "sale_ts %lld is out of range", (long long)ts);
        if (!pc->ts_millis && __builtin_mul_overflow((int64_t)ts, 1000, &ts_ms))
                REJECT("invalid_timestamp",
                       "sale_ts %lld is after %s, the latest accepted event time",
                       (long long)ts, LATEST_ISO);
        if (pc->ts_millis)
                ts_ms = ts;
        if (check_time(pc, raw, ts, ts_ms, rej))
                goto reject;

        ev->key = scratch.key;
        ev->key_len = klen;
        ev->value = amount;
        ev->ts_ms = ts_ms;
        json_decref(doc);
        return 0;
reject:
        if (doc)
                json_decref(doc);
        return -1;
}

size_t sales_json_string(const char *s, size_t len, char *buf, size_t size) {
        return rill_json_string(s, len, buf, size);
}

const rill_agg_field_t sales_fields[SALES_FIGURES] = {
    {"sum", RILL_AGG_SUM},
    {"count", RILL_AGG_COUNT},
    {"first_ts_ms", RILL_AGG_MIN_TIME},
    {"last_ts_ms", RILL_AGG_MAX_TIME},
};

const rill_pg_column_t sales_pg_columns[2] = {
    {"total_amount_usd", "sum"},
    {"sales_count", "count"},
};

size_t sales_result_head(const rill_result_t *res, char *buf, size_t size) {
        char start[40], end[40];
        rill_iso8601(res->window_start_ms, start, sizeof(start));
        rill_iso8601(res->window_end_ms, end, sizeof(end));
        size_t n = sales_json_string(res->key, res->key_len, buf + 13, size > 13 ? size - 13 : 0);
        if (!n)
                return 0;
        memcpy(buf, "{\"seller_id\":", 13);
        n += 13;
        int m = snprintf(buf + n, size - n,
                         ",\"window_start\":\"%s\",\"window_end\":\"%s\",\"window_start_ms\":%lld",
                         start, end, (long long)res->window_start_ms);
        if (m < 0 || (size_t)m >= size - n)
                return 0;
        return n + (size_t)m;
}

size_t sales_format(void *opaque, const rill_result_t *res, char *buf, size_t size) {
        (void)opaque;
        size_t n = sales_result_head(res, buf, size);
        if (!n)
                return 0;
        int m = snprintf(buf + n, size - n, ",\"total_amount_usd\":%lld,\"sales_count\":%lld}",
                         (long long)rill_result_value(res, SALES_SUM).i,
                         (long long)rill_result_value(res, SALES_COUNT).i);
        if (m < 0 || (size_t)m >= size - n)
                return 0;
        return n + (size_t)m;
}
