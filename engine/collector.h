/*
 * collector.h -- a stream thread's record collector (Kafka Streams'
 * RecordCollector): the open Kafka transaction of the thread's
 * transactional producer, the records its tasks send into it (results,
 * changelog records, repartitioned records and watermarks, dead letters),
 * and what the delivery reports said about them.
 *
 * A task is handed the collector (rill_task_env_t) and sends through it; it
 * never reaches the stream thread. The stream thread owns the collector: it
 * makes and replaces its producer, and drives the transaction's end (send
 * offsets, commit, abort) with the deadline kept here.
 *
 * The first record of a transaction begins it; the transaction must end
 * before its deadline (transaction.timeout.ms after it began, less a fifth),
 * and every wait inside it is bounded by what is left (rill_collector_wait_ms).
 *
 * @locality everything here runs on the owning stream thread; the
 * delivery-report callback (rill_collector_dr_cb) runs inside that thread's
 * producer calls (flush, poll).
 */
#ifndef RILL_COLLECTOR_H
#define RILL_COLLECTOR_H

#include "metrics.h"
#include "rill.h"

#include <librdkafka/rdkafka.h>

/** The topics a stream thread writes; their handles and metadata are
 *  fetched once, before the first transaction. */
typedef enum rill_out {
        RILL_OUT_REPARTITION,
        RILL_OUT_CHANGELOG,
        RILL_OUT_OUTPUT,
        RILL_OUT_DLQ,
        RILL_OUT_N
} rill_out_t;

typedef struct rill_collector {
        rd_kafka_t *producer;              /* made and replaced by the stream thread */
        rd_kafka_topic_t *out[RILL_OUT_N]; /* the producer's handles, by rill_out_t */
        int txn_open;
        int64_t txn_deadline_ms; /* mono ms by which the open transaction must end */
        int64_t txn_timeout_ms;  /* transaction.timeout.ms */
        int txn_fatal;           /* the producer cannot go on: the thread recreates it */
        int dr_failed;           /* a record of the open transaction was not delivered */
        char dr_err[256];
        int partitions;          /* aggregation partitions (changelog partitions) */
        int64_t *changelog_next; /* [partitions]: after the last changelog record
                                  * delivered in the open transaction, -1 none */
        rill_metrics_t *m;
} rill_collector_t;

/** Set up c for `partitions` changelog partitions (no producer yet).
 *  @returns 0, or -1 out of memory. */
int rill_collector_init(rill_collector_t *c, int partitions, int64_t txn_timeout_ms,
                        rill_metrics_t *m);
void rill_collector_free(rill_collector_t *c);

/** Send one record into the open transaction (begun by the first record).
 *  changelog_partition: for a changelog record its partition (its delivery
 *  then counts in rill_collector_changelog_next), else -1. hdrs are taken
 *  over. A full producer queue is waited out within the transaction's
 *  deadline. @returns 0 or -1 (errstr; txn_fatal set when the producer
 *  cannot go on). */
int rill_collector_send(rill_collector_t *c, rill_out_t out, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        rd_kafka_headers_t *hdrs, int32_t changelog_partition, char *errstr,
                        size_t errstr_size);

/** Send an input record that was rejected to the dead-letter topic, with its
 *  reason, detail and coordinates as headers. @returns 0 or -1 (errstr). */
int rill_collector_dead_letter(rill_collector_t *c, const rd_kafka_message_t *m,
                               const void *value, size_t value_len, const rill_reject_t *rej,
                               char *errstr, size_t errstr_size);

/** The changelog offset after the last delivered changelog record of
 *  partition in the open transaction (what a store records once the
 *  transaction committed), -1 when none. */
int64_t rill_collector_changelog_next(const rill_collector_t *c, int32_t partition);

/** The transaction ended (committed, after the stores took its changelog
 *  offsets, or aborted, or given up with its producer): nothing is open and
 *  no changelog offset is pending. */
void rill_collector_ended(rill_collector_t *c);

/** Milliseconds left before the open transaction's deadline (the whole
 *  timeout when none is open). */
int64_t rill_collector_left_ms(const rill_collector_t *c);
/** The bound for one wait inside the transaction: what is left of it, but
 *  at least a second (a call needs a round trip to mean anything). */
int rill_collector_wait_ms(const rill_collector_t *c);

/** Describe a transactional error into errstr ("what: error"), mark the
 *  producer fatal when the error is, destroy e. @returns -1. */
int rill_collector_error(rill_collector_t *c, rd_kafka_error_t *e, const char *what,
                         char *errstr, size_t errstr_size);

/** The producer's delivery-report callback (rd_kafka_conf_set_dr_msg_cb,
 *  with the collector as the producer's opaque). */
void rill_collector_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

#endif
