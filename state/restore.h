/*
 * restore.h -- rebuilding a window store from its changelog partition.
 *
 * Each stream thread owns one restorer: a plain consumer (no group, nothing
 * committed) reading read_committed, as Kafka Streams' restore consumer.
 * A restore reads from the store's committed changelog offset to the end
 * offset captured when it starts -- the high watermark, read by a second,
 * read_uncommitted client, so transactions still open or without markers yet
 * are waited for, not skipped -- and is done when the consumer's position
 * (the EOF offset, which steps over transaction markers) reaches it.
 */
#ifndef RILL_RESTORE_H
#define RILL_RESTORE_H

#include "wstore.h"
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>

/* How long a restore's begin may wait for the changelog's end offsets (the
 * stream thread neither consumes nor commits meanwhile); after a begin that
 * found the leader out of reach, until one succeeds, the shorter bound. */
#define RESTORE_BEGIN_TIMEOUT_MS 5000
#define RESTORE_BEGIN_RETRY_TIMEOUT_MS 1000

typedef struct rill_restorer rill_restorer_t;

typedef struct rill_restore_stats {
        int64_t start_offset, end_offset;
        int64_t records;
        int64_t elapsed_ms;
} rill_restore_stats_t;

/** @returns a restorer writing batch_records changelog records per RocksDB
 *  WriteBatch, or NULL (errstr). conf is consumed (owned) on success
 *  and on failure. @locality the owning stream thread. */
rill_restorer_t *rill_restorer_new(rd_kafka_conf_t *conf, int64_t batch_records, char *errstr,
                                   size_t errstr_size);
void rill_restorer_destroy(rill_restorer_t *r);

/** The low and high watermark of topic/partition as a read_uncommitted
 *  reader sees them (high = the real end of the log, past any open
 *  transaction), from the broker (one round trip for each of low and high
 *  that is not NULL, bounded by timeout_ms together).
 *  @returns 0, -2 the broker or the leader could not be reached in time
 *  (worth trying again later), or -1 another error (errstr).
 *  @locality the owning stream thread. */
int rill_restorer_end_offsets(rill_restorer_t *r, const char *topic, int32_t partition,
                              int timeout_ms, int64_t *low, int64_t *high, char *errstr,
                              size_t errstr_size);

/** Learn topic's partition leaders on both clients (one metadata round
 *  trip each, bounded by timeout_ms), so that a thread's first restore does
 *  not wait for a leader lookup, and keep the topic's handles for the
 *  restorer's life (librdkafka refreshes their leaders).
 *  @returns 0 or -1 (errstr; restores still work, only slower to start).
 *  @locality the owning stream thread. */
int rill_restorer_warm(rill_restorer_t *r, const char *topic, int timeout_ms, char *errstr,
                       size_t errstr_size);

/** Where restore reports progress (records done, records at most): atomics
 *  read by the metrics endpoint; NULL to stop reporting. */
void rill_restorer_progress(rill_restorer_t *r, atomic_llong *done, atomic_llong *total);

/** Restore in slices, one restore at a time per restorer (the stream
 *  thread restores between its polls, so its consumer keeps polling whatever
 *  the state size). rill_restore_begin reads the end and starts reading:
 *  @returns 0 started (call rill_restore_step), 2 nothing to read (done), 1
 *  the store does not belong to this changelog (see rill_restore), -1 error,
 *  -2 the changelog's leader could not be reached: none now, or no answer
 *  within the begin's bound (a broker down: try again later).
 *  rill_restore_step reads for at most about slice_ms: @returns 2 more to
 *  read, 0 done (stats filled), -1 failed or past timeout_ms (errstr); the
 *  restore is over unless 2. rill_restore_abandon ends the restore in
 *  progress (a revocation): the store keeps the prefix flushed so far, with
 *  its changelog offset. @locality the owning stream thread. */
int rill_restore_begin(rill_restorer_t *r, rill_wstore_t *ws, const char *topic,
                       int32_t partition, int64_t timeout_ms, char *errstr, size_t errstr_size);
int rill_restore_step(rill_restorer_t *r, int64_t slice_ms, rill_restore_stats_t *stats,
                      char *errstr, size_t errstr_size);
void rill_restore_abandon(rill_restorer_t *r);

/** Restore ws from topic/partition, all at once (begin + steps). @returns 0 done, 1 when the store is
 *  ahead of or behind the changelog (a different incarnation of the topic:
 *  the caller wipes the store and restores from the start), -1 on error,
 *  -2 the changelog's leader could not be reached (as rill_restore_begin).
 *  @locality the owning stream thread. */
int rill_restore(rill_restorer_t *r, rill_wstore_t *ws, const char *topic, int32_t partition,
                 int64_t timeout_ms, rill_restore_stats_t *stats, char *errstr,
                 size_t errstr_size);

#endif
