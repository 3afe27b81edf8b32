/*
 * pgsink.c -- see pgsink.h.
 *
 * Every statement is parameterised. Batches travel as arrays ($1::text[],
 * $2::int8[] ...) expanded with unnest(), so one statement writes any
 * number of rows in one round trip. The text array literal is built here
 * with every element double-quoted and '"' and '\' escaped, which is the
 * complete quoting rule of PostgreSQL's array input.
 */
#include "pgsink.h"
#include "fault.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte buffer. */
typedef struct sbuf {
        char *p;
        size_t len, size;
} sbuf_t;

static void sb_grow(sbuf_t *b, size_t n) {
        if (b->len + n + 1 <= b->size)
                return;
        while (b->len + n + 1 > b->size)
                b->size = b->size ? b->size * 2 : 256;
        b->p = realloc(b->p, b->size);
}
static void sb_putc(sbuf_t *b, char c) {
        sb_grow(b, 1);
        b->p[b->len++] = c;
        b->p[b->len] = '\0';
}
static void sb_puts(sbuf_t *b, const char *s, size_t n) {
        sb_grow(b, n);
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}
static void sb_int(sbuf_t *b, int64_t v) {
        char tmp[24];
        int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
        sb_puts(b, tmp, (size_t)n);
}
static void sb_reset(sbuf_t *b) {
        b->len = 0;
        if (b->p)
                b->p[0] = '\0';
}
/* Start or continue an array literal: "{" first, "," between elements. */
static void sb_sep(sbuf_t *b) { sb_putc(b, b->len ? ',' : '{'); }
static const char *sb_array(sbuf_t *b) {
        if (!b->len)
                sb_putc(b, '{');
        sb_putc(b, '}');
        return b->p;
}

struct rill_pgsink {
        PGconn *conn;
        char *app_id;
        char *upsert_sql;
        int broken;
        size_t nresults, nprogress;
        sbuf_t r_key, r_start, r_end, r_sum, r_count; /* results */
        sbuf_t p_topic, p_part, p_off, p_epoch;       /* progress */
};

/* ---- connection ------------------------------------------------------------------ */

int rill_pgsink_check_dsn(const char *dsn, char *errstr, size_t errstr_size) {
        char *err = NULL;
        PQconninfoOption *opts = PQconninfoParse(dsn, &err);
        if (!opts) {
                snprintf(errstr, errstr_size, "invalid Postgres DSN: %s",
                         err ? err : "out of memory");
                errstr[strcspn(errstr, "\n")] = '\0';
                PQfreemem(err);
                return -1;
        }
        int rc = 0;
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (!strcmp(o->keyword, "password") && o->val && *o->val) {
                        snprintf(errstr, errstr_size,
                                 "the Postgres DSN must not contain a password "
                                 "(hint: set PGPASSWORD or PGPASSFILE instead)");
                        rc = -1;
                }
        PQconninfoFree(opts);
        return rc;
}

static PGconn *pg_open(const char *dsn) {
        const char *kw[] = {"connect_timeout", "options", "application_name", "dbname", NULL};
        const char *val[] = {"5", "-c statement_timeout=15000 -c client_min_messages=warning", "rill", dsn, NULL};
        return PQconnectdbParams(kw, val, 1);
}

static void conn_error(PGconn *c, const char *what, char *errstr, size_t errstr_size) {
        const char *host = PQhost(c), *port = PQport(c);
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(errstr, errstr_size,
                 "%s Postgres at %s:%s: %s (hint: is the server running? check pg.dsn and "
                 "PGPASSWORD/PGPASSFILE)",
                 what, host ? host : "?", port ? port : "?", msg);
}

rill_pgsink_t *rill_pgsink_connect(const rill_pgsink_spec_t *spec, char *errstr,
                                   size_t errstr_size) {
        if (rill_pgsink_check_dsn(spec->dsn, errstr, errstr_size))
                return NULL;
        PGconn *c = pg_open(spec->dsn);
        if (PQstatus(c) != CONNECTION_OK) {
                conn_error(c, "cannot connect to", errstr, errstr_size);
                PQfinish(c);
                return NULL;
        }
        rill_pgsink_t *pg = calloc(1, sizeof(*pg));
        pg->conn = c;
        pg->app_id = strdup(spec->app_id);
        char *t = PQescapeIdentifier(c, spec->table, strlen(spec->table));
        char *k = PQescapeIdentifier(c, spec->key_column, strlen(spec->key_column));
        char *s = PQescapeIdentifier(c, spec->sum_column, strlen(spec->sum_column));
        char *n = PQescapeIdentifier(c, spec->count_column, strlen(spec->count_column));
        sbuf_t sql = {0};
        const char *parts[] = {
            "INSERT INTO ", t, " (", k, ", window_start, window_end, ", s, ", ", n, ")"
            " SELECT u.k, timestamptz 'epoch' + u.s * interval '1 millisecond',"
            " timestamptz 'epoch' + u.e * interval '1 millisecond', u.t, u.c"
            " FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[])"
            " AS u(k, s, e, t, c) ON CONFLICT (", k, ", window_start) DO UPDATE SET"
            " window_end = EXCLUDED.window_end, ", s, " = EXCLUDED.", s, ", ", n,
            " = EXCLUDED.", n, NULL};
        for (int i = 0; parts[i]; i++)
                sb_puts(&sql, parts[i], strlen(parts[i]));
        pg->upsert_sql = sql.p;
        /* the migration DDL, kept with the names it was escaped for */
        sbuf_t ddl = {0};
        const char *dparts[] = {
            "CREATE TABLE IF NOT EXISTS ", t, " (", k, " text NOT NULL,"
            " window_start timestamptz NOT NULL, window_end timestamptz NOT NULL, ", s,
            " bigint NOT NULL, ", n, " bigint NOT NULL, PRIMARY KEY (", k, ", window_start))",
            NULL};
        for (int i = 0; dparts[i]; i++)
                sb_puts(&ddl, dparts[i], strlen(dparts[i]));
        PQfreemem(t), PQfreemem(k), PQfreemem(s), PQfreemem(n);
        /* stash the DDL after the upsert (freed together) */
        pg->upsert_sql = realloc(pg->upsert_sql, sql.len + 1 + ddl.len + 1);
        memcpy(pg->upsert_sql + sql.len + 1, ddl.p, ddl.len + 1);
        free(ddl.p);
        return pg;
}

void rill_pgsink_destroy(rill_pgsink_t *pg) {
        if (!pg)
                return;
        PQfinish(pg->conn);
        sbuf_t *bufs[] = {&pg->r_key, &pg->r_start, &pg->r_end, &pg->r_sum, &pg->r_count,
                          &pg->p_topic, &pg->p_part, &pg->p_off, &pg->p_epoch};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(*bufs); i++)
                free(bufs[i]->p);
        free(pg->upsert_sql);
        free(pg->app_id);
        free(pg);
}

/* Make sure the connection is usable; reset it after a failure. */
static int pg_ready(rill_pgsink_t *pg, char *errstr, size_t errstr_size) {
        if (!pg->broken && PQstatus(pg->conn) == CONNECTION_OK)
                return 0;
        PQreset(pg->conn);
        if (PQstatus(pg->conn) != CONNECTION_OK) {
                conn_error(pg->conn, "cannot reconnect to", errstr, errstr_size);
                return -1;
        }
        pg->broken = 0;
        return 0;
}

/* Run one statement; @returns the result (caller clears) or NULL on failure. */
static PGresult *pg_exec(rill_pgsink_t *pg, const char *sql, int nparams,
                         const char *const *params, ExecStatusType want, const char *what,
                         char *errstr, size_t errstr_size) {
        PGresult *r = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != want) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
                msg[strcspn(msg, "\n")] = '\0';
                snprintf(errstr, errstr_size, "Postgres %s failed: %s", what, msg);
                PQclear(r);
                if (PQstatus(pg->conn) != CONNECTION_OK)
                        pg->broken = 1;
                else
                        PQclear(PQexec(pg->conn, "ROLLBACK"));
                return NULL;
        }
        return r;
}

static int pg_cmd(rill_pgsink_t *pg, const char *sql, const char *what, char *errstr,
                  size_t errstr_size) {
        PGresult *r = pg_exec(pg, sql, 0, NULL, PGRES_COMMAND_OK, what, errstr, errstr_size);
        PQclear(r);
        return r ? 0 : -1;
}

/* ---- migration and epochs ----------------------------------------------------------- */

int rill_pgsink_migrate(rill_pgsink_t *pg, char *errstr, size_t errstr_size) {
        if (pg_ready(pg, errstr, errstr_size))
                return -1;
        const char *ddl = pg->upsert_sql + strlen(pg->upsert_sql) + 1;
        PGresult *r;
        if (pg_cmd(pg, "BEGIN", "migration", errstr, errstr_size))
                return -1;
        /* serialise concurrent first starts of many workers */
        if (!(r = pg_exec(pg, "SELECT pg_advisory_xact_lock(7243510)", 0, NULL, PGRES_TUPLES_OK,
                          "migration lock", errstr, errstr_size)))
                return -1;
        PQclear(r);
        if (pg_cmd(pg, ddl, "migration (results table)", errstr, errstr_size) ||
            pg_cmd(pg,
                   "CREATE TABLE IF NOT EXISTS rill_sink_progress ("
                   " app_id text NOT NULL, topic text NOT NULL, partition int NOT NULL,"
                   " next_offset bigint NOT NULL DEFAULT -1, epoch bigint NOT NULL,"
                   " updated_at timestamptz NOT NULL DEFAULT now(),"
                   " PRIMARY KEY (app_id, topic, partition))",
                   "migration (progress table)", errstr, errstr_size) ||
            pg_cmd(pg, "COMMIT", "migration commit", errstr, errstr_size))
                return -1;
        return 0;
}

int64_t rill_pgsink_acquire_epoch(rill_pgsink_t *pg, const char *topic, int32_t partition,
                                  char *errstr, size_t errstr_size) {
        if (pg_ready(pg, errstr, errstr_size))
                return -1;
        char part[16];
        snprintf(part, sizeof(part), "%d", partition);
        const char *params[] = {pg->app_id, topic, part};
        PGresult *r = pg_exec(pg,
                              "INSERT INTO rill_sink_progress (app_id, topic, partition, epoch)"
                              " VALUES ($1, $2, $3::int, 1) ON CONFLICT (app_id, topic, partition)"
                              " DO UPDATE SET epoch = rill_sink_progress.epoch + 1,"
                              " updated_at = now() RETURNING epoch",
                              3, params, PGRES_TUPLES_OK, "epoch acquisition", errstr,
                              errstr_size);
        if (!r)
                return -1;
        int64_t epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return epoch;
}

/* ---- batches ------------------------------------------------------------------------ */

void rill_pgsink_add_result(rill_pgsink_t *pg, const rill_result_t *res) {
        sb_sep(&pg->r_key);
        sb_putc(&pg->r_key, '"');
        for (size_t i = 0; i < res->key_len; i++) {
                if (res->key[i] == '"' || res->key[i] == '\\')
                        sb_putc(&pg->r_key, '\\');
                sb_putc(&pg->r_key, res->key[i]);
        }
        sb_putc(&pg->r_key, '"');
        sb_sep(&pg->r_start), sb_int(&pg->r_start, res->window_start_ms);
        sb_sep(&pg->r_end), sb_int(&pg->r_end, res->window_end_ms);
        sb_sep(&pg->r_sum), sb_int(&pg->r_sum, res->sum);
        sb_sep(&pg->r_count), sb_int(&pg->r_count, res->count);
        pg->nresults++;
}

void rill_pgsink_add_progress(rill_pgsink_t *pg, const char *topic, int32_t partition,
                              int64_t next_offset, int64_t epoch) {
        sb_sep(&pg->p_topic);
        sb_putc(&pg->p_topic, '"');
        for (const char *c = topic; *c; c++) /* topic names are [a-zA-Z0-9._-] */
                sb_putc(&pg->p_topic, *c);
        sb_putc(&pg->p_topic, '"');
        sb_sep(&pg->p_part), sb_int(&pg->p_part, partition);
        sb_sep(&pg->p_off), sb_int(&pg->p_off, next_offset);
        sb_sep(&pg->p_epoch), sb_int(&pg->p_epoch, epoch);
        pg->nprogress++;
}

size_t rill_pgsink_pending_results(const rill_pgsink_t *pg) { return pg->nresults; }

void rill_pgsink_clear(rill_pgsink_t *pg) {
        sbuf_t *bufs[] = {&pg->r_key, &pg->r_start, &pg->r_end, &pg->r_sum, &pg->r_count,
                          &pg->p_topic, &pg->p_part, &pg->p_off, &pg->p_epoch};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(*bufs); i++)
                sb_reset(bufs[i]);
        pg->nresults = pg->nprogress = 0;
}

int rill_pgsink_commit(rill_pgsink_t *pg, char *errstr, size_t errstr_size) {
        int rc = -1;
        PGresult *r = NULL;
        if (!pg->nresults && !pg->nprogress) {
                rill_pgsink_clear(pg);
                return 0;
        }
        if (pg_ready(pg, errstr, errstr_size) ||
            pg_cmd(pg, "BEGIN", "begin", errstr, errstr_size))
                goto done;
        if (pg->nprogress) {
                const char *params[] = {pg->app_id, sb_array(&pg->p_topic), sb_array(&pg->p_part),
                                        sb_array(&pg->p_off), sb_array(&pg->p_epoch)};
                r = pg_exec(pg,
                            "UPDATE rill_sink_progress p SET next_offset = CASE WHEN u.o >= 0 THEN u.o"
                            " ELSE p.next_offset END, updated_at = now()"
                            " FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[])"
                            " AS u(t, pa, o, ep) WHERE p.app_id = $1 AND p.topic = u.t"
                            " AND p.partition = u.pa AND p.epoch = u.ep",
                            5, params, PGRES_COMMAND_OK, "progress update", errstr, errstr_size);
                if (!r)
                        goto done;
                long updated = strtol(PQcmdTuples(r), NULL, 10);
                PQclear(r);
                if (updated != (long)pg->nprogress) {
                        snprintf(errstr, errstr_size,
                                 "fenced in Postgres: %ld of %zu partitions have a newer epoch "
                                 "(another worker owns them now)",
                                 (long)pg->nprogress - updated, pg->nprogress);
                        PQclear(PQexec(pg->conn, "ROLLBACK"));
                        rc = 1;
                        goto done;
                }
        }
        if (pg->nresults) {
                const char *params[] = {sb_array(&pg->r_key), sb_array(&pg->r_start),
                                        sb_array(&pg->r_end), sb_array(&pg->r_sum),
                                        sb_array(&pg->r_count)};
                r = pg_exec(pg, pg->upsert_sql, 5, params, PGRES_COMMAND_OK, "results upsert",
                            errstr, errstr_size);
                if (!r)
                        goto done;
                PQclear(r);
        }
        rill_fault("before_pg_commit");
        if (pg_cmd(pg, "COMMIT", "commit", errstr, errstr_size))
                goto done;
        rill_fault("after_pg_commit");
        rc = 0;
done:
        rill_pgsink_clear(pg);
        return rc;
}
