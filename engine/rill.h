/*
 * rill.h -- the public API of librill, an embeddable exactly-once stream
 * processing runtime for windowed aggregations over Kafka.
 *
 * What an application supplies (the "topology"):
 *   - an extract function that turns one input record into an event
 *     (key, integer value, event time) or rejects it with a reason;
 *   - an aggregator: what a window holds and how an event changes it
 *     (built-in figures: sum, count, min, max, average, first and last event
 *     time; or the application's own state and functions);
 *   - a format function that turns one closed window into the bytes of the
 *     output record, and the columns of its PostgreSQL row.
 * What the runtime does with it: per key, over event-time windows (tumbling,
 * or hopping with window.advance.ms), a task adds each event to the state of
 * every window that contains it, keeps the open windows in a RocksDB window
 * store backed by a compacted changelog topic, and at every commit interval
 * emits the windows that closed (emit on window close) to the output topic
 * and to a PostgreSQL table, in one Kafka transaction whose consumer offsets
 * commit with it, fenced in Postgres by a per-task epoch.
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
        int64_t value;  /**< the figure the aggregator adds up (e.g. an amount) */
        int64_t ts_ms;  /**< event time, epoch milliseconds */
} rill_event_t;

/** Why a record was rejected: a short machine-readable reason
 *  (e.g. "malformed_json") and a human detail. Both go to the dead-letter
 *  topic as headers together with the original bytes. */
typedef struct rill_reject {
        char reason[40];
        char detail[200];
} rill_reject_t;

/* ---- aggregations ------------------------------------------------------------ */

/** One figure of an aggregate, as queries, the dead-letter fallback and the
 *  PostgreSQL sink see it: an integer (bigint) or a double (double
 *  precision), as its definition says. */
typedef struct rill_value {
        int64_t i;
        double d;
} rill_value_t;

typedef struct rill_value_def {
        const char *name; /**< e.g. "sum"; a JSON member and a column's source */
        int is_double;    /**< 0: the figure is .i, 1: it is .d */
} rill_value_def_t;

#define RILL_STATE_BYTES_MAX 256   /**< one window's state in memory */
#define RILL_STATE_ENCODED_MAX 512 /**< one window's encoded state */

/** An aggregator: what a window holds and how an event changes it.
 *  The state is a fixed-size value (state_size bytes, at most
 *  RILL_STATE_BYTES_MAX, aligned to 16) that the engine copies, stores,
 *  sends to the changelog and restores, but never interprets. Every
 *  function may run on any stream thread at once (encode, decode and value
 *  on the HTTP thread too): they may only read opaque. */
typedef struct rill_aggregator {
        size_t state_size;
        /** The state of a new window, before its first event. */
        void (*init)(void *opaque, void *state);
        /** Add one event. @returns 0, or -1 with rej filled (for example an
         *  overflow): the event goes to the dead-letter topic with that
         *  reason and every window keeps the state it had. */
        int (*add)(void *opaque, void *state, const rill_event_t *ev, rill_reject_t *rej);
        /** The state's bytes in the store and the changelog (msgpack is the
         *  convention). @returns the length, 0 when it does not fit size
         *  (RILL_STATE_ENCODED_MAX). */
        size_t (*encode)(void *opaque, const void *state, unsigned char *buf, size_t size);
        /** @returns 0, or -1 when buf is not a state of this aggregator. */
        int (*decode)(void *opaque, const void *buf, size_t len, void *state);
        /** The figures of a state: values[i] names figure i, value() computes it. */
        const rill_value_def_t *values;
        int n_values;
        rill_value_t (*value)(void *opaque, const void *state, int i);
        void *opaque;
} rill_aggregator_t;

/** The built-in figures, over the event's value (or its event time). */
typedef enum {
        RILL_AGG_SUM,      /**< sum of values (an overflow dead-letters the event) */
        RILL_AGG_COUNT,    /**< number of events */
        RILL_AGG_MIN,      /**< smallest value */
        RILL_AGG_MAX,      /**< largest value */
        RILL_AGG_AVG,      /**< mean of the values, a double (its sum / count) */
        RILL_AGG_MIN_TIME, /**< earliest event time, epoch ms */
        RILL_AGG_MAX_TIME, /**< latest event time, epoch ms */
} rill_agg_op_t;

typedef struct rill_agg_field {
        const char *name;
        rill_agg_op_t op;
} rill_agg_field_t;

#define RILL_AGG_FIELDS_MAX 16

/** An aggregator of built-in figures, in the order given. Its state is their
 *  running values (an average keeps a sum and a count), encoded as one
 *  msgpack array of integers. fields and their names must outlive it.
 *  @returns NULL and errstr when n is not 1..RILL_AGG_FIELDS_MAX, a name is
 *  missing or repeated, or an op is unknown. Free it with
 *  rill_aggregator_destroy after rill_app_destroy.
 *  @locality application thread. */
rill_aggregator_t *rill_aggregator_fields_new(const rill_agg_field_t *fields, int n,
                                              char *errstr, size_t errstr_size);
void rill_aggregator_destroy(rill_aggregator_t *agg);

/** The index of the figure named name, or -1. */
int rill_aggregator_value_index(const rill_aggregator_t *agg, const char *name);

/** A closed window's final result. */
typedef struct rill_result {
        const char *key;
        size_t key_len;
        int64_t window_start_ms;
        int64_t window_end_ms;
        const void *state;                   /**< the window's state */
        const rill_aggregator_t *aggregator; /**< whose state it is */
} rill_result_t;

/** Figure i of a result (rill_aggregator_value_index names it). */
rill_value_t rill_result_value(const rill_result_t *res, int i);

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

/** One column of the PostgreSQL row of a result, after the key and the
 *  window's start and end: it holds the aggregator's figure named value,
 *  as bigint or double precision (the figure's kind). */
typedef struct rill_pg_column {
        const char *name;  /**< the column, e.g. "total_amount_usd" */
        const char *value; /**< the figure, e.g. "sum" */
} rill_pg_column_t;

#define RILL_PG_COLUMNS_MAX 16

typedef struct rill_topology {
        rill_extract_fn *extract;
        rill_format_fn *format;
        void *opaque;
        const char *store_name; /**< e.g. "sales-windows" (changelog name) */
        /** What a window holds; kept by reference (must outlive the app). */
        const rill_aggregator_t *aggregator;
        /** The PostgreSQL row: the key column (e.g. "seller_id"), then
         *  window_start and window_end (timestamptz), then these columns.
         *  pg_ncolumns 0: the application has no PostgreSQL sink, whatever
         *  pg.dsn says. */
        const char *pg_key_column;
        const rill_pg_column_t *pg_columns;
        int pg_ncolumns;
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
