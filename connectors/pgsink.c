/*
 * pgsink.c -- see pgsink.h.
 *
 * Every statement is parameterised. Batches travel as arrays ($1::text[],
 * $2::int8[] ...) expanded with unnest(), so one statement writes any
 * number of rows in one round trip. The text array literal is built here
 * with every element double-quoted and '"' and '\' escaped, which is the
 * complete quoting rule of PostgreSQL's array input.
 *
 * Every wait is bounded, and shorter than the Kafka transaction the commit
 * runs in (transaction.timeout.ms, 10 s by default): a network cut or a
 * server that stops answering must not hang the worker for hours while the
 * orphaned server session keeps the progress rows locked against the new
 * owner. Three layers, all defaults that the DSN (or PGOPTIONS /
 * PGCONNECT_TIMEOUT) overrides, see pgsink.h:
 *   - the client waits for each answer at most statement_timeout + 2 s,
 *     through libpq's asynchronous calls and poll(), then drops the
 *     connection (reopened on the next call);
 *   - TCP keepalives and tcp_user_timeout, on both ends, notice a dead peer;
 *   - the server cancels a statement after statement_timeout, gives up a
 *     lock wait after lock_timeout, and ends a session left idle inside a
 *     transaction (its client vanished before COMMIT) after
 *     idle_in_transaction_session_timeout, which releases its locks.
 */
#include "pgsink.h"
#include "fault.h"

#include <libpq-fe.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The defaults of pgsink.h. */
#define PG_CONNECT_TIMEOUT_S "5"
#define PG_STATEMENT_TIMEOUT_MS 5000
#define PG_WAIT_MARGIN_MS 2000      /* client wait = statement_timeout + this */
#define PG_WAIT_NO_TIMEOUT_MS 3600000 /* client wait when statement_timeout=0 */
#define PG_SERVER_OPTIONS                                                                   \
        "-c statement_timeout=5000 -c lock_timeout=3000"                                    \
        " -c idle_in_transaction_session_timeout=5000 -c tcp_keepalives_idle=5"             \
        " -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 -c tcp_user_timeout=5000"  \
        " -c client_min_messages=warning"

static int64_t now_ms(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

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

/* A queued result; its key is keys.p[key_off .. key_off + key_len), its
 * column values vals[val_off .. val_off + ncolumns). */
typedef struct pg_row {
        size_t key_off, key_len, val_off;
        int64_t start, end;
} pg_row_t;

struct rill_pgsink {
        PGconn *conn;
        char *app_id;
        char *upsert_sql;
        int broken;
        int64_t statement_timeout_ms; /* the session's, read after each connect */
        int64_t wait_ms;              /* longest wait for one answer */
        char sqlstate[6];             /* of the last failed statement */
        size_t chunk_rows;            /* most results per upsert statement */
        size_t nresults, rows_cap, nprogress;
        pg_row_t *rows;
        rill_value_t *vals;                           /* the rows' column values */
        size_t vals_cap;
        int ncolumns;
        int is_double[RILL_PGSINK_COLUMNS_MAX];
        sbuf_t keys;                                  /* results' keys, raw */
        sbuf_t r_key, r_start, r_end;                 /* one chunk's arrays */
        sbuf_t r_col[RILL_PGSINK_COLUMNS_MAX];
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

/* Is a libpq keyword set by its environment variable (PGCONNECT_TIMEOUT...)? */
static int env_sets(const PQconninfoOption *defs, const char *kw) {
        for (const PQconninfoOption *o = defs; o && o->keyword; o++)
                if (!strcmp(o->keyword, kw))
                        return o->envvar && getenv(o->envvar) && *getenv(o->envvar);
        return 0;
}

/* The client settings go before the DSN, which overrides them (libpq
 * processes the keywords in order; "dbname" expands the DSN in place); a
 * setting whose PG* variable is set is left to libpq. The server settings
 * travel in "options" after the DSN, ours first and then the user's own
 * options (from the DSN, else PGOPTIONS): the server applies them in order,
 * so the user's -c wins over ours, and both survive. */
static PGconn *pg_open(const char *dsn) {
        static const char *const dkw[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                          "keepalives_interval", "keepalives_count",
                                          "tcp_user_timeout", "application_name"};
        static const char *const dval[] = {PG_CONNECT_TIMEOUT_S, "1", "5", "1", "3", "5000", "rill"};
        const char *kw[16], *val[16];
        int n = 0;
        PQconninfoOption *defs = PQconndefaults();
        for (size_t i = 0; i < sizeof(dkw) / sizeof(*dkw); i++)
                if (!env_sets(defs, dkw[i]))
                        kw[n] = dkw[i], val[n++] = dval[i];
        PQconninfoFree(defs);
        const char *user_opts = NULL;
        PQconninfoOption *parsed = PQconninfoParse(dsn, NULL);
        for (PQconninfoOption *o = parsed; o && o->keyword; o++)
                if (!strcmp(o->keyword, "options") && o->val && *o->val)
                        user_opts = o->val;
        if (!user_opts)
                user_opts = getenv("PGOPTIONS");
        sbuf_t opts = {0};
        sb_puts(&opts, PG_SERVER_OPTIONS, strlen(PG_SERVER_OPTIONS));
        if (user_opts && *user_opts) {
                sb_putc(&opts, ' ');
                sb_puts(&opts, user_opts, strlen(user_opts));
        }
        kw[n] = "dbname", val[n++] = dsn;
        kw[n] = "options", val[n++] = opts.p;
        kw[n] = NULL, val[n] = NULL;
        PGconn *c = PQconnectdbParams(kw, val, 1);
        PQconninfoFree(parsed);
        free(opts.p);
        return c;
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

static int pg_session(rill_pgsink_t *pg, char *errstr, size_t errstr_size);

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
        pg->chunk_rows = RILL_PGSINK_CHUNK_ROWS;
        if (pg_session(pg, errstr, errstr_size)) {
                rill_pgsink_destroy(pg);
                return NULL;
        }
        if (spec->ncolumns < 1 || spec->ncolumns > RILL_PGSINK_COLUMNS_MAX) {
                snprintf(errstr, errstr_size, "a Postgres sink has 1 to %d value columns, not %d",
                         RILL_PGSINK_COLUMNS_MAX, spec->ncolumns);
                rill_pgsink_destroy(pg);
                return NULL;
        }
        pg->ncolumns = spec->ncolumns;
        char *t = PQescapeIdentifier(c, spec->table, strlen(spec->table));
        char *k = PQescapeIdentifier(c, spec->key_column, strlen(spec->key_column));
        char *col[RILL_PGSINK_COLUMNS_MAX];
        int bad = !t || !k;
        for (int i = 0; i < spec->ncolumns; i++) {
                pg->is_double[i] = spec->columns[i].is_double;
                col[i] = PQescapeIdentifier(c, spec->columns[i].name,
                                            strlen(spec->columns[i].name));
                bad |= !col[i];
        }
        if (bad) {
                snprintf(errstr, errstr_size,
                         "cannot quote the results table's names (%s): %s (hint: table and "
                         "column names must be valid in the database's encoding)",
                         spec->table, PQerrorMessage(c));
                PQfreemem(t), PQfreemem(k);
                for (int i = 0; i < spec->ncolumns; i++)
                        PQfreemem(col[i]);
                rill_pgsink_destroy(pg);
                return NULL;
        }
        /* INSERT INTO t (k, window_start, window_end, c0, ..) SELECT u.k,
         * <start>, <end>, u.c0, .. FROM unnest($1::text[], $2::int8[],
         * $3::int8[], $4::<type>[], ..) AS u(k, s, e, c0, ..) ON CONFLICT (k,
         * window_start) DO UPDATE SET window_end = EXCLUDED.window_end,
         * c0 = EXCLUDED.c0, .. -- every name escaped, every value a parameter */
        sbuf_t sql = {0}, sel = {0}, arr = {0}, as = {0}, set = {0}, ddl = {0};
        char tmp[64];
        for (int i = 0; i < spec->ncolumns; i++) {
                const char *type = pg->is_double[i] ? "float8" : "int8";
                sb_puts(&sql, ", ", 2), sb_puts(&sql, col[i], strlen(col[i]));
                snprintf(tmp, sizeof(tmp), ", u.c%d", i);
                sb_puts(&sel, tmp, strlen(tmp));
                snprintf(tmp, sizeof(tmp), ", $%d::%s[]", i + 4, type);
                sb_puts(&arr, tmp, strlen(tmp));
                snprintf(tmp, sizeof(tmp), ", c%d", i);
                sb_puts(&as, tmp, strlen(tmp));
                sb_puts(&set, ", ", 2), sb_puts(&set, col[i], strlen(col[i]));
                sb_puts(&set, " = EXCLUDED.", 12), sb_puts(&set, col[i], strlen(col[i]));
                sb_puts(&ddl, ", ", 2), sb_puts(&ddl, col[i], strlen(col[i]));
                const char *dtype = pg->is_double[i] ? " double precision NOT NULL"
                                                     : " bigint NOT NULL";
                sb_puts(&ddl, dtype, strlen(dtype));
        }
        sbuf_t cols = sql;
        sql = (sbuf_t){0};
        const char *parts[] = {
            "INSERT INTO ", t, " (", k, ", window_start, window_end", cols.p,
            ") SELECT u.k, timestamptz 'epoch' + u.s * interval '1 millisecond',"
            " timestamptz 'epoch' + u.e * interval '1 millisecond'", sel.p,
            " FROM unnest($1::text[], $2::int8[], $3::int8[]", arr.p,
            ") AS u(k, s, e", as.p, ") ON CONFLICT (", k, ", window_start) DO UPDATE SET"
            " window_end = EXCLUDED.window_end", set.p, NULL};
        for (int i = 0; parts[i]; i++)
                sb_puts(&sql, parts[i], strlen(parts[i]));
        pg->upsert_sql = sql.p;
        /* the migration DDL, kept with the names it was escaped for */
        sbuf_t dsql = {0};
        const char *dparts[] = {
            "CREATE TABLE IF NOT EXISTS ", t, " (", k, " text NOT NULL,"
            " window_start timestamptz NOT NULL, window_end timestamptz NOT NULL", ddl.p,
            ", PRIMARY KEY (", k, ", window_start))", NULL};
        for (int i = 0; dparts[i]; i++)
                sb_puts(&dsql, dparts[i], strlen(dparts[i]));
        PQfreemem(t), PQfreemem(k);
        for (int i = 0; i < spec->ncolumns; i++)
                PQfreemem(col[i]);
        free(cols.p), free(sel.p), free(arr.p), free(as.p), free(set.p), free(ddl.p);
        ddl = dsql;
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
        sbuf_t *bufs[] = {&pg->r_key, &pg->r_start, &pg->r_end,
                          &pg->p_topic, &pg->p_part, &pg->p_off, &pg->p_epoch};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(*bufs); i++)
                free(bufs[i]->p);
        for (int i = 0; i < RILL_PGSINK_COLUMNS_MAX; i++)
                free(pg->r_col[i].p);
        free(pg->keys.p);
        free(pg->rows);
        free(pg->vals);
        free(pg->upsert_sql);
        free(pg->app_id);
        free(pg);
}

/* ---- statements, each wait bounded ------------------------------------------------- */

/* Wait until the socket is ready for `events` or the deadline passes.
 * @returns 1 ready, 0 timed out, -1 error (connection broken). */
static int pg_wait(PGconn *c, short events, int64_t deadline) {
        for (;;) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return 0;
                struct pollfd p = {.fd = PQsocket(c), .events = events};
                if (p.fd < 0)
                        return -1;
                int n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
                if (n > 0)
                        return 1;
                if (n < 0 && errno != EINTR)
                        return -1;
        }
}

/* Run one statement: send it, then collect its result, never waiting past
 * pg->wait_ms. Without an answer by then the server or the network is gone:
 * the connection is dropped (its socket closed, so a live server notices at
 * once) and reopened on the next call. On failure the open transaction, if
 * any, is rolled back (the server drops it with the connection anyway) and
 * pg->sqlstate holds the server's code ("" when the failure is the client's).
 * @returns the result (caller clears) or NULL and errstr. */
static PGresult *pg_exec(rill_pgsink_t *pg, const char *sql, int nparams,
                         const char *const *params, ExecStatusType want, const char *what,
                         char *errstr, size_t errstr_size) {
        PGconn *c = pg->conn;
        int64_t t0 = now_ms(), deadline = t0 + pg->wait_ms;
        PGresult *res = NULL;
        int ok = PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0), timed_out = 0;
        pg->sqlstate[0] = '\0';
        while (ok) {
                int f = PQflush(c); /* nonblocking: 1 while the query is still being sent */
                if (f < 0)
                        ok = 0;
                else if (f == 0 && !PQisBusy(c)) {
                        PGresult *r = PQgetResult(c);
                        if (!r)
                                break;
                        if (res && PQresultStatus(res) == PGRES_FATAL_ERROR)
                                PQclear(r); /* keep the first error */
                        else
                                PQclear(res), res = r;
                } else {
                        int w = pg_wait(c, (short)(POLLIN | (f ? POLLOUT : 0)), deadline);
                        if (w <= 0)
                                ok = 0, timed_out = w == 0;
                        else if (!PQconsumeInput(c))
                                ok = 0;
                }
        }
        if (ok && res && PQresultStatus(res) == want)
                return res;
        if (timed_out) {
                const char *host = PQhost(c), *port = PQport(c);
                snprintf(errstr, errstr_size,
                         "Postgres %s got no answer from %s:%s within %lld ms (statement_timeout "
                         "%lld ms + %d ms): the server or the network stopped answering; the "
                         "connection is closed and reopened on the next attempt (hint: check the "
                         "network path and the server's load)",
                         what, host ? host : "?", port ? port : "?", (long long)(now_ms() - t0),
                         (long long)pg->statement_timeout_ms, PG_WAIT_MARGIN_MS);
        } else {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s",
                         res && PQresultStatus(res) != want ? PQresultErrorMessage(res)
                                                            : PQerrorMessage(c));
                msg[strcspn(msg, "\n")] = '\0';
                snprintf(errstr, errstr_size, "Postgres %s failed: %s", what,
                         *msg ? msg : "unexpected result");
                const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
                snprintf(pg->sqlstate, sizeof(pg->sqlstate), "%s", state ? state : "");
        }
        PQclear(res);
        if (!ok || PQstatus(c) != CONNECTION_OK) {
                /* shutdown(), not close(): libpq still owns the descriptor */
                if (PQsocket(c) >= 0)
                        shutdown(PQsocket(c), SHUT_RDWR);
                pg->broken = 1;
        } else if (PQtransactionStatus(c) != PQTRANS_IDLE && strcmp(sql, "ROLLBACK")) {
                char ignored[256], state[sizeof(pg->sqlstate)];
                memcpy(state, pg->sqlstate, sizeof(state));
                PQclear(pg_exec(pg, "ROLLBACK", 0, NULL, PGRES_COMMAND_OK, "rollback", ignored,
                                sizeof(ignored)));
                memcpy(pg->sqlstate, state, sizeof(state));
        }
        return NULL;
}

/* Set up a new session: nonblocking sends (a big batch cannot block in the
 * kernel past the deadline) and the client wait derived from the session's
 * statement_timeout, whoever set it. */
static int pg_session(rill_pgsink_t *pg, char *errstr, size_t errstr_size) {
        pg->statement_timeout_ms = PG_STATEMENT_TIMEOUT_MS;
        pg->wait_ms = PG_STATEMENT_TIMEOUT_MS + PG_WAIT_MARGIN_MS;
        if (PQsetnonblocking(pg->conn, 1)) {
                conn_error(pg->conn, "cannot set up the session with", errstr, errstr_size);
                return -1;
        }
        PGresult *r = pg_exec(pg, "SELECT setting::int8 FROM pg_settings WHERE name = 'statement_timeout'",
                              0, NULL, PGRES_TUPLES_OK, "session setup", errstr, errstr_size);
        if (!r)
                return -1;
        pg->statement_timeout_ms = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
        PQclear(r);
        pg->wait_ms = pg->statement_timeout_ms > 0 ? pg->statement_timeout_ms + PG_WAIT_MARGIN_MS
                                                   : PG_WAIT_NO_TIMEOUT_MS;
        return 0;
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
        if (pg_session(pg, errstr, errstr_size))
                return -1;
        pg->broken = 0;
        return 0;
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

void rill_pgsink_add_result(rill_pgsink_t *pg, const char *key, size_t key_len,
                            int64_t start_ms, int64_t end_ms, const rill_value_t *values) {
        if (pg->nresults == pg->rows_cap) {
                pg->rows_cap = pg->rows_cap ? pg->rows_cap * 2 : 256;
                pg->rows = realloc(pg->rows, pg->rows_cap * sizeof(*pg->rows));
                pg->vals_cap = pg->rows_cap * (size_t)pg->ncolumns;
                pg->vals = realloc(pg->vals, pg->vals_cap * sizeof(*pg->vals));
        }
        size_t off = pg->nresults * (size_t)pg->ncolumns;
        memcpy(pg->vals + off, values, (size_t)pg->ncolumns * sizeof(*values));
        pg->rows[pg->nresults++] = (pg_row_t){pg->keys.len, key_len, off, start_ms, end_ms};
        sb_puts(&pg->keys, key, key_len);
}

/* A double as an array element: 17 significant digits read back to the same
 * double; NaN and the infinities in the words float8 input takes. */
static void sb_double(sbuf_t *b, double d) {
        char tmp[40];
        int n = isnan(d)      ? snprintf(tmp, sizeof(tmp), "NaN")
                : isinf(d) ? snprintf(tmp, sizeof(tmp), d > 0 ? "Infinity" : "-Infinity")
                           : snprintf(tmp, sizeof(tmp), "%.17g", d);
        sb_puts(b, tmp, (size_t)n);
}

/* The arrays of the upsert for rows [from, from + n). */
static void build_chunk(rill_pgsink_t *pg, size_t from, size_t n) {
        sbuf_t *bufs[] = {&pg->r_key, &pg->r_start, &pg->r_end};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(*bufs); i++)
                sb_reset(bufs[i]);
        for (int c = 0; c < pg->ncolumns; c++)
                sb_reset(&pg->r_col[c]);
        for (size_t i = from; i < from + n; i++) {
                const pg_row_t *r = &pg->rows[i];
                const char *key = pg->keys.p + r->key_off;
                sb_sep(&pg->r_key);
                sb_putc(&pg->r_key, '"');
                for (size_t j = 0; j < r->key_len; j++) {
                        if (key[j] == '"' || key[j] == '\\')
                                sb_putc(&pg->r_key, '\\');
                        sb_putc(&pg->r_key, key[j]);
                }
                sb_putc(&pg->r_key, '"');
                sb_sep(&pg->r_start), sb_int(&pg->r_start, r->start);
                sb_sep(&pg->r_end), sb_int(&pg->r_end, r->end);
                for (int c = 0; c < pg->ncolumns; c++) {
                        const rill_value_t *v = &pg->vals[r->val_off + (size_t)c];
                        sb_sep(&pg->r_col[c]);
                        if (pg->is_double[c])
                                sb_double(&pg->r_col[c], v->d);
                        else
                                sb_int(&pg->r_col[c], v->i);
                }
        }
}

/* Upsert the queued results in chunks of at most pg->chunk_rows, inside the
 * caller's transaction. A chunk cancelled by the statement timeout (57014)
 * fails this attempt -- the transaction is lost with it, and retrying here
 * would stretch this attempt past the Kafka transaction timeout -- and
 * halves the chunk for the next attempt, which the caller makes with the
 * same rows: at most log2(RILL_PGSINK_CHUNK_ROWS) attempts until one row per
 * statement. A commit whose full chunks all took under a quarter of the
 * statement timeout doubles the chunk again (up to the maximum), so a
 * passing slowdown does not shrink it for good. */
static int upsert_results(rill_pgsink_t *pg, int64_t *slowest_full, char *errstr,
                          size_t errstr_size) {
        size_t chunk = pg->chunk_rows, n = pg->nresults;
        for (size_t from = 0; from < n; from += chunk) {
                size_t m = n - from < chunk ? n - from : chunk;
                build_chunk(pg, from, m);
                const char *params[3 + RILL_PGSINK_COLUMNS_MAX] = {
                    sb_array(&pg->r_key), sb_array(&pg->r_start), sb_array(&pg->r_end)};
                for (int c = 0; c < pg->ncolumns; c++)
                        params[3 + c] = sb_array(&pg->r_col[c]);
                int64_t t0 = now_ms();
                PGresult *r = pg_exec(pg, pg->upsert_sql, 3 + pg->ncolumns, params, PGRES_COMMAND_OK,
                                      "results upsert", errstr, errstr_size);
                if (!r) {
                        if (strcmp(pg->sqlstate, "57014"))
                                return -1;
                        size_t len = strlen(errstr);
                        if (m > 1) {
                                pg->chunk_rows = m / 2;
                                snprintf(errstr + len, errstr_size - len,
                                         " (rows %zu-%zu of %zu in one statement, statement_timeout "
                                         "%lld ms): the next attempt writes at most %zu rows per "
                                         "statement",
                                         from + 1, from + m, n, (long long)pg->statement_timeout_ms,
                                         pg->chunk_rows);
                        } else {
                                snprintf(errstr + len, errstr_size - len,
                                         " (a single row, statement_timeout %lld ms; hint: look "
                                         "for locks, triggers or load on the table, or raise "
                                         "statement_timeout in pg.dsn options)",
                                         (long long)pg->statement_timeout_ms);
                        }
                        return -1;
                }
                PQclear(r);
                int64_t took = now_ms() - t0;
                if (m == chunk && took > *slowest_full)
                        *slowest_full = took;
        }
        return 0;
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
        sbuf_t *bufs[] = {&pg->r_key, &pg->r_start, &pg->r_end,
                          &pg->p_topic, &pg->p_part, &pg->p_off, &pg->p_epoch};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(*bufs); i++)
                sb_reset(bufs[i]);
        for (int c = 0; c < RILL_PGSINK_COLUMNS_MAX; c++)
                sb_reset(&pg->r_col[c]);
        sb_reset(&pg->keys);
        pg->nresults = pg->nprogress = 0;
}

size_t rill_pgsink_chunk_rows(const rill_pgsink_t *pg) { return pg->chunk_rows; }

int rill_pgsink_commit(rill_pgsink_t *pg, char *errstr, size_t errstr_size) {
        int rc = -1;
        int64_t slowest_full = -1;
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
                        char ignored[256];
                        pg_cmd(pg, "ROLLBACK", "rollback", ignored, sizeof(ignored));
                        rc = 1;
                        goto done;
                }
        }
        if (upsert_results(pg, &slowest_full, errstr, errstr_size))
                goto done;
        rill_fault("before_pg_commit");
        if (pg_cmd(pg, "COMMIT", "commit", errstr, errstr_size))
                goto done;
        rill_fault("after_pg_commit");
        if (slowest_full >= 0 && slowest_full * 4 < pg->statement_timeout_ms &&
            pg->chunk_rows < RILL_PGSINK_CHUNK_ROWS)
                pg->chunk_rows = pg->chunk_rows * 2 < RILL_PGSINK_CHUNK_ROWS ? pg->chunk_rows * 2
                                                                           : RILL_PGSINK_CHUNK_ROWS;
        rc = 0;
done:
        rill_pgsink_clear(pg);
        return rc;
}

int64_t rill_pgsink_wait_bound_ms(void) { return PG_STATEMENT_TIMEOUT_MS + PG_WAIT_MARGIN_MS; }
