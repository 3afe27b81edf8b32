/*
 * rill.h -- the public API of librill, an embeddable exactly-once stream
 * processing runtime for windowed aggregations over Kafka.
 *
 * What an application supplies (the "topology"):
 *   - an extract function that turns one input record into an event
 *     (key, integer value, event time) or rejects it with a reason;
 *   - a format function that turns one closed window into the bytes of the
 *     output record.
 * What the runtime does with it: per input partition a task sums the values
 * per key over tumbling event-time windows, keeps the open windows in a
 * RocksDB window store backed by a compacted changelog topic, and at every
 * commit interval emits the windows that closed (emit on window close) to the
 * output topic and to a PostgreSQL table, in one Kafka transaction whose
 * consumer offsets commit with it, fenced in Postgres by a per-task epoch.
 *
 * Errors are values: functions return 0 on success or -1 and fill an errstr
 * buffer that the caller owns. The library never exits the process.
 */
#ifndef RILL_H
#define RILL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration -------------------------------------------------------- */

typedef enum { RILL_CONF_STR, RILL_CONF_INT, RILL_CONF_BOOL } rill_conf_type_t;

/** One configuration property: its key (e.g. "window.size.ms"), which is also
 *  the flag --window-size-ms and the environment variable RILL_WINDOW_SIZE_MS. */
typedef struct rill_confdef {
        const char *key;
        rill_conf_type_t type;
        const char *def;  /**< default value as text, NULL = unset */
        int64_t min, max; /**< bounds for RILL_CONF_INT */
        const char *help;
} rill_confdef_t;

typedef struct rill_conf rill_conf_t;

/** New configuration holding the engine's properties at their defaults plus
 *  the application's own (extra may be NULL; terminated by a NULL key). */
rill_conf_t *rill_conf_new(const rill_confdef_t *extra);
void rill_conf_destroy(rill_conf_t *conf);

/** Set one property, validating it. Keys "kafka.<prop>" are passed through
 *  to librdkafka unchecked here; a key librdkafka rejects at client creation
 *  is skipped with a "kafka_config_ignored" warning. */
int rill_conf_set(rill_conf_t *conf, const char *key, const char *value,
                  char *errstr, size_t errstr_size);
const char *rill_conf_get(const rill_conf_t *conf, const char *key);
int64_t rill_conf_get_int(const rill_conf_t *conf, const char *key);
int rill_conf_get_bool(const rill_conf_t *conf, const char *key);

/** Load a configuration file of "key=value" lines ('#' comments). */
int rill_conf_load_file(rill_conf_t *conf, const char *path, char *errstr,
                        size_t errstr_size);

/** Load configuration with the precedence flags > environment > file:
 *  the file named by --config or RILL_CONFIG, then RILL_* variables, then
 *  the command-line flags (--key-name=value, --key-name value, -X k=v).
 *  @returns 0, 1 when --help was asked (help already printed), or -1. */
int rill_conf_load_args(rill_conf_t *conf, int argc, char **argv,
                        char *errstr, size_t errstr_size);

/** Print every property with its flag, environment variable and default. */
void rill_conf_print_help(const rill_conf_t *conf, FILE *fp);

/** Iterate over "kafka.*" passthrough properties (key without the prefix). */
void rill_conf_foreach_kafka(const rill_conf_t *conf,
                             void (*cb)(const char *key, const char *value,
                                        void *opaque),
                             void *opaque);

/* ---- the topology ----------------------------------------------------------- */

/** A raw input record as consumed from Kafka. Read-only, valid during the
 *  call it is passed to. */
typedef struct rill_raw {
        const void *key;
        size_t key_len;
        const void *value;
        size_t value_len;
        const char *topic;
        int32_t partition;
        int64_t offset;
        int64_t now_wall_ms; /* wall-clock time when the record's batch was polled */
} rill_raw_t;

/** An extracted event. key points into the raw record or into key_buf. */
typedef struct rill_event {
        const char *key;
        size_t key_len;
        int64_t value;  /**< the amount added to the window sum */
        int64_t ts_ms;  /**< event time, epoch milliseconds */
} rill_event_t;

/** Why a record was rejected: a short machine-readable reason
 *  (e.g. "malformed_json") and a human detail. Both go to the dead-letter
 *  topic as headers together with the original bytes. */
typedef struct rill_reject {
        char reason[40];
        char detail[200];
} rill_reject_t;

/** A closed window's final result. */
typedef struct rill_result {
        const char *key;
        size_t key_len;
        int64_t window_start_ms;
        int64_t window_end_ms;
        int64_t sum;
        int64_t count;
        int64_t first_ts_ms;
        int64_t last_ts_ms;
} rill_result_t;

/** Extract one event from a raw record.
 *  @returns 0 and fills ev, or -1 and fills rej.
 *  @locality any stream thread (must be thread-safe; opaque is shared). */
typedef int (rill_extract_fn)(void *opaque, const rill_raw_t *raw,
                              rill_event_t *ev, rill_reject_t *rej);

/** Format a result as the output record value into buf.
 *  @returns the length written, or 0 if it did not fit.
 *  @locality any stream thread. */
typedef size_t (rill_format_fn)(void *opaque, const rill_result_t *res,
                                char *buf, size_t size);

typedef struct rill_topology {
        rill_extract_fn *extract;
        rill_format_fn *format;
        void *opaque;
        const char *store_name;    /**< e.g. "sales-windows" (changelog name) */
        const char *pg_key_column;   /**< e.g. "seller_id" */
        const char *pg_sum_column;   /**< e.g. "total_amount_usd" */
        const char *pg_count_column; /**< e.g. "sales_count" */
} rill_topology_t;

/* ---- the runtime ------------------------------------------------------------ */

typedef struct rill_app rill_app_t;

/** Create the runtime: validates the configuration, checks that the input
 *  and output topics exist, creates the internal topics (repartition,
 *  changelog) and the dead-letter topic when missing, runs the Postgres
 *  migration. Nothing is consumed yet.
 *  @locality application thread. */
rill_app_t *rill_app_new(rill_conf_t *conf, const rill_topology_t *topo,
                         char *errstr, size_t errstr_size);

/** Run the stream threads until rill_app_stop() is called or a thread fails
 *  fatally. On stop every thread commits, closes its tasks and leaves the
 *  group (a static member, group.instance.id, does not leave), all within
 *  shutdown.timeout.ms of the stop. @returns 0 on a clean stop, -1 on a
 *  fatal error (errstr filled), RILL_APP_ABANDONED when the shutdown
 *  deadline passed with threads still running: they are abandoned (logged,
 *  errstr filled) and still use the app, so the caller must not destroy it
 *  but end the process now (_exit); the exactly-once protocol makes that as
 *  safe as a crash: the next owner of each task aborts its open transaction.
 *  @locality application thread (blocks). */
#define RILL_APP_ABANDONED 1
int rill_app_run(rill_app_t *app, char *errstr, size_t errstr_size);

/** Ask the runtime to stop. @locality any thread, async-signal-safe. */
void rill_app_stop(rill_app_t *app);

void rill_app_destroy(rill_app_t *app);

#ifdef __cplusplus
}
#endif
#endif /* RILL_H */
