/*
 * pgsink.h -- the PostgreSQL sink: window results and sink progress in one
 * SQL transaction, fenced by a per-task epoch.
 *
 * One sink per stream thread (one connection), used only by that thread.
 * Tables (created by rill_pgsink_migrate when missing):
 *   <table>(<key> text, window_start timestamptz, window_end timestamptz,
 *           <sum> bigint, <count> bigint, primary key (<key>, window_start))
 *   rill_sink_progress(app_id, topic, partition, next_offset, epoch, updated_at)
 * A task takes a new epoch when it is assigned (epoch = epoch + 1). Every
 * commit updates its progress row only where the stored epoch still equals
 * the task's; zero rows updated means another worker took the partition
 * since: the whole SQL transaction rolls back and the caller is fenced.
 * Results are an idempotent upsert, so a replay after a crash between the
 * Postgres and the Kafka commit writes the same rows again.
 */
#ifndef RILL_PGSINK_H
#define RILL_PGSINK_H

#include "rill.h"
#include <stdint.h>

typedef struct rill_pgsink rill_pgsink_t;

typedef struct rill_pgsink_spec {
        const char *dsn, *table, *key_column, *sum_column, *count_column, *app_id;
} rill_pgsink_spec_t;

/** Refuse a DSN that carries a password (secrets come from PGPASSWORD or
 *  PGPASSFILE, never flags). @returns 0 or -1 (errstr). */
int rill_pgsink_check_dsn(const char *dsn, char *errstr, size_t errstr_size);

/** Connect. @returns NULL and errstr on failure. @locality owning thread. */
rill_pgsink_t *rill_pgsink_connect(const rill_pgsink_spec_t *spec, char *errstr,
                                   size_t errstr_size);
void rill_pgsink_destroy(rill_pgsink_t *pg);

/** Create the tables when missing (serialised by an advisory lock). */
int rill_pgsink_migrate(rill_pgsink_t *pg, char *errstr, size_t errstr_size);

/** Take a new epoch for (topic, partition). @returns the epoch (>= 1) or -1. */
int64_t rill_pgsink_acquire_epoch(rill_pgsink_t *pg, const char *topic, int32_t partition,
                                  char *errstr, size_t errstr_size);

/** Queue a result / a progress row for the next rill_pgsink_commit(). */
void rill_pgsink_add_result(rill_pgsink_t *pg, const rill_result_t *res);
void rill_pgsink_add_progress(rill_pgsink_t *pg, const char *topic, int32_t partition,
                              int64_t next_offset, int64_t epoch);
size_t rill_pgsink_pending_results(const rill_pgsink_t *pg);

/** Write everything queued in one transaction, then clear the queue.
 *  @returns 0 committed, 1 fenced (nothing written), -1 error (nothing
 *  written; the connection is reset on the next call). */
int rill_pgsink_commit(rill_pgsink_t *pg, char *errstr, size_t errstr_size);

/** Drop what is queued. */
void rill_pgsink_clear(rill_pgsink_t *pg);

#endif
