/*
 * event.h -- the sales event format: parsing and validating
 * {"seller_id": string, "amount_usd": integer, "sale_ts": integer} and
 * formatting a window result as JSON.
 */
#ifndef SALES_EVENT_H
#define SALES_EVENT_H

#include "rill.h"

#define SALES_KEY_MAX 1024

typedef struct sales_parse_conf {
        int ts_millis;          /* sale_ts in milliseconds instead of seconds */
        int64_t max_future_ms;  /* reject events further ahead of wall clock (0 = off;
                                 * after year 9999 is rejected regardless) */
        int64_t max_past_ms;    /* reject events further behind wall clock (0 = off) */
        size_t key_max;         /* longest seller_id in bytes */
} sales_parse_conf_t;

/** Per-call scratch holding the extracted key (jansson's strings die with
 *  the document). One per thread: extract is called with &tls scratch. */
typedef struct sales_scratch {
        char key[SALES_KEY_MAX];
} sales_scratch_t;

/** rill_extract_fn for sales events; opaque is a sales_parse_conf_t.
 *  Reasons: malformed_json, invalid_utf8, not_an_object, missing_field,
 *  wrong_type, invalid_seller_id, invalid_amount, invalid_timestamp (negative,
 *  fractional, after 9999-12-31T23:59:59.999Z whatever max_future_ms says, or
 *  beyond max_future_ms / max_past_ms).
 *  @locality any thread (uses a thread-local key buffer). */
int sales_extract(void *opaque, const rill_raw_t *raw, rill_event_t *ev, rill_reject_t *rej);

/** The same with jansson alone (no fast path): what sales_extract must
 *  agree with. For tests and benchmarks. */
int sales_extract_full(void *opaque, const rill_raw_t *raw, rill_event_t *ev,
                       rill_reject_t *rej);

/** The sales aggregator's figures, in this order (its state keeps the
 *  store and changelog bytes of rill's first, fixed aggregate:
 *  [sum, count, first event time, last event time]). */
enum { SALES_SUM, SALES_COUNT, SALES_FIRST_TS, SALES_LAST_TS, SALES_FIGURES };
extern const rill_agg_field_t sales_fields[SALES_FIGURES];

/** The Postgres columns of aggregated_sales after seller_id, window_start
 *  and window_end: total_amount_usd (sum) and sales_count (count). */
extern const rill_pg_column_t sales_pg_columns[2];

/** rill_format_fn for results of the sales_fields aggregator:
 *  {"seller_id":..,"window_start":"..Z","window_end":"..Z",
 *  "window_start_ms":..,"total_amount_usd":..,"sales_count":..} */
size_t sales_format(void *opaque, const rill_result_t *res, char *buf, size_t size);

/** The members every sales result starts with, without the closing brace:
 *  {"seller_id":..,"window_start":"..Z","window_end":"..Z","window_start_ms":..
 *  @returns the length, or 0 when it does not fit. */
size_t sales_result_head(const rill_result_t *res, char *buf, size_t size);

/** Write s as a JSON string literal (quotes included). @returns length or 0. */
size_t sales_json_string(const char *s, size_t len, char *buf, size_t size);

/** The properties the sales programs add to the engine's. */
extern const rill_confdef_t sales_confdefs[];

#endif
