/*
 * pgsink.h -- the PostgreSQL sink: window results and sink progress in one
 * SQL transaction, fenced by a per-task epoch.
 *
 * One sink per stream thread (one connection), used only by that thread.
 * Tables (created by rill_pgsink_migrate when missing):
 *   <table>(<key> text, window_start timestamptz, window_end timestamptz,
 *           <column> bigint or double precision, ... (the spec's columns),
 *           primary key (<key>, window_start))
 *   rill_sink_progress(app_id, topic, partition, next_offset, epoch, updated_at)
 * A task takes a new epoch when it is assigned (epoch = epoch + 1). Every
 * commit updates its progress row only where the stored epoch still equals
 * the task's; zero rows updated means another worker took the partition
 * since: the whole SQL transaction rolls back and the caller is fenced.
 * Results are an idempotent upsert, so a replay after a crash between the
 * Postgres and the Kafka commit writes the same rows again.
 *
 * Timeouts. Every Postgres wait is shorter than the Kafka transaction the
 * commit runs in (transaction.timeout.ms, 10 s by default), so a server or
 * network that stops answering fails the commit cycle instead of hanging it,
 * and the orphaned server session cannot keep the progress rows locked:
 *   client (libpq keywords; the DSN or PGCONNECT_TIMEOUT wins):
 *     connect_timeout=5 (s), keepalives=1, keepalives_idle=5 (s),
 *     keepalives_interval=1 (s), keepalives_count=3, tcp_user_timeout=5000 (ms),
 *     and no answer waited for longer than statement_timeout + 2 s (7 s);
 *   server (-c options; the user's own options, in the DSN or PGOPTIONS, win):
 *     statement_timeout=5000, lock_timeout=3000,
 *     idle_in_transaction_session_timeout=5000, tcp_keepalives_idle=5,
 *     tcp_keepalives_interval=1, tcp_keepalives_count=3, tcp_user_timeout=5000.
 * Whoever lowers transaction.timeout.ms below 8 s should lower these too.
 *
 * Results are upserted in statements of at most RILL_PGSINK_CHUNK_ROWS rows,
 * all in the commit's one transaction. A statement cancelled by the statement
 * timeout fails the commit and halves the chunk for the next one.
 */
#ifndef RILL_PGSINK_H
#define RILL_PGSINK_H

#include "rill.h"
#include <stdint.h>

typedef struct rill_pgsink rill_pgsink_t;

#define RILL_PGSINK_COLUMNS_MAX 16

/** A value column of the results table. */
typedef struct rill_pgsink_column {
        const char *name;
        int is_double; /* double precision (rill_value_t.d), else bigint (.i) */
} rill_pgsink_column_t;

typedef struct rill_pgsink_spec {
        const char *dsn, *table, *key_column, *app_id;
        rill_pgsink_column_t columns[RILL_PGSINK_COLUMNS_MAX];
        int ncolumns; /* 1..RILL_PGSINK_COLUMNS_MAX */
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

/** Queue a result (values: one per column of the spec, copied) / a progress
 *  row for the next rill_pgsink_commit(). */
void rill_pgsink_add_result(rill_pgsink_t *pg, const char *key, size_t key_len,
                            int64_t start_ms, int64_t end_ms, const rill_value_t *values);
void rill_pgsink_add_progress(rill_pgsink_t *pg, const char *topic, int32_t partition,
                              int64_t next_offset, int64_t epoch);
size_t rill_pgsink_pending_results(const rill_pgsink_t *pg);

/** Write everything queued in one transaction, then clear the queue.
 *  Bounded: each statement waits at most statement_timeout + 2 s.
 *  @returns 0 committed, 1 fenced (nothing written), -1 error (nothing
 *  written, or, when the COMMIT got no answer, possibly everything: the
 *  replay upserts the same rows; the connection is reset on the next call).
 *  After a statement timeout the caller should queue the same rows again:
 *  the next call writes them in smaller statements.
 *  @locality owning thread. */
int rill_pgsink_commit(rill_pgsink_t *pg, char *errstr, size_t errstr_size);

/** Drop what is queued. */
void rill_pgsink_clear(rill_pgsink_t *pg);

/** Most results per upsert statement at first; halved after a statement
 *  timeout, down to 1. */
#define RILL_PGSINK_CHUNK_ROWS 5000

/** The longest one statement may take with the default settings
 *  (statement_timeout + the client's margin): the engine checks at startup
 *  that a Kafka transaction outlives it. @locality any thread. */
int64_t rill_pgsink_wait_bound_ms(void);

/** The current most results per upsert statement (for logs and tests). */
size_t rill_pgsink_chunk_rows(const rill_pgsink_t *pg);

#endif
