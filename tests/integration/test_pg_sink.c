/* Integration: the Postgres sink against the real local server through
 * libpq: migration, an exact round trip of hostile seller ids (parameters
 * only), idempotent upserts, epoch fencing of a zombie, a DSN with a
 * password refused, a server that stops answering mid-transaction (through
 * a TCP proxy in this process that freezes: it stops forwarding without
 * closing, as a network cut does), and a batch too big for one statement
 * within the statement timeout. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include "itest.h"
#include "pgsink.h"

static char err[512], table[64], app[64];

static rill_pgsink_spec_t spec(void) {
        rill_pgsink_spec_t s = {itest_env("RILL_PG_DSN"), table, "seller_id", app,
                                {{"total_amount_usd", 0}, {"sales_count", 0}}, 2};
        return s;
}

/* A result of the sales table's shape: a sum and a count. */
typedef struct result {
        const char *key;
        size_t key_len;
        int64_t start, end, sum, count;
} result_t;

static void add_result(rill_pgsink_t *pg, const result_t *r) {
        rill_value_t v[2] = {{r->sum, 0}, {r->count, 0}};
        rill_pgsink_add_result(pg, r->key, r->key_len, r->start, r->end, v);
}

static PGresult *q(const char *sql, int n, const char *const *params) {
        PGconn *c = PQconnectdb(itest_env("RILL_PG_DSN"));
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
                fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        PQfinish(c);
        return r;
}

static void roundtrip_and_fencing(void **s) {
        (void)s;
        snprintf(table, sizeof(table), "itest_sales_%d", (int)getpid());
        snprintf(app, sizeof(app), "itest-app-%d", (int)getpid());
        rill_pgsink_spec_t sp = spec();
        rill_pgsink_t *a = rill_pgsink_connect(&sp, err, sizeof(err));
        if (!a)
                fail_msg("%s", err);
        assert_int_equal(rill_pgsink_migrate(a, err, sizeof(err)), 0);
        assert_int_equal(rill_pgsink_migrate(a, err, sizeof(err)), 0); /* idempotent */
        int64_t ea = rill_pgsink_acquire_epoch(a, "t", 0, err, sizeof(err));
        assert_true(ea >= 1);
        const char *keys[] = {"plain", "quo\"te", "back\\slash", "it's'); DROP TABLE x;--",
                              "{brace,comma}", "ünïcødé €", "NULL"};
        int nkeys = sizeof(keys) / sizeof(*keys);
        for (int i = 0; i < nkeys; i++) {
                result_t r = {keys[i], strlen(keys[i]), 60000, 120000, 100 + i, i + 1};
                add_result(a, &r);
        }
        rill_pgsink_add_progress(a, "t", 0, 42, ea);
        assert_int_equal(rill_pgsink_commit(a, err, sizeof(err)), 0);
        /* replay of the same window: idempotent, values replaced not added */
        result_t again = {keys[0], strlen(keys[0]), 60000, 120000, 100, 1};
        add_result(a, &again);
        rill_pgsink_add_progress(a, "t", 0, 42, ea);
        assert_int_equal(rill_pgsink_commit(a, err, sizeof(err)), 0);

        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT total_amount_usd, sales_count, extract(epoch from window_start)::bigint,"
                 " extract(epoch from window_end)::bigint FROM %s WHERE seller_id = $1", table);
        for (int i = 0; i < nkeys; i++) {
                PGresult *r = q(sql, 1, &keys[i]);
                assert_int_equal(PQntuples(r), 1);
                assert_int_equal(atoll(PQgetvalue(r, 0, 0)), 100 + i);
                assert_int_equal(atoll(PQgetvalue(r, 0, 1)), i + 1);
                assert_int_equal(atoll(PQgetvalue(r, 0, 2)), 60);
                assert_int_equal(atoll(PQgetvalue(r, 0, 3)), 120);
                PQclear(r);
        }
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
        PGresult *r = q(sql, 0, NULL);
        assert_int_equal(atoi(PQgetvalue(r, 0, 0)), nkeys);
        PQclear(r);

        /* a new owner takes the partition: the old one (a zombie) is refused */
        rill_pgsink_t *b = rill_pgsink_connect(&sp, err, sizeof(err));
        assert_non_null(b);
        int64_t eb = rill_pgsink_acquire_epoch(b, "t", 0, err, sizeof(err));
        assert_true(eb > ea);
        result_t z = {"zombie", 6, 60000, 120000, 1, 1};
        add_result(a, &z);
        rill_pgsink_add_progress(a, "t", 0, 99, ea);
        assert_int_equal(rill_pgsink_commit(a, err, sizeof(err)), 1);
        assert_non_null(strstr(err, "fenced"));
        const char *zk[] = {"zombie"};
        snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE seller_id = $1", table);
        r = q(sql, 1, zk);
        assert_int_equal(PQntuples(r), 0); /* nothing of the zombie's transaction */
        PQclear(r);
        const char *pp[] = {app};
        r = q("SELECT next_offset, epoch FROM rill_sink_progress WHERE app_id = $1", 1, pp);
        assert_int_equal(atoll(PQgetvalue(r, 0, 0)), 42);
        assert_int_equal(atoll(PQgetvalue(r, 0, 1)), eb);
        PQclear(r);
        /* the new owner writes fine */
        add_result(b, &z);
        rill_pgsink_add_progress(b, "t", 0, 99, eb);
        assert_int_equal(rill_pgsink_commit(b, err, sizeof(err)), 0);
        rill_pgsink_destroy(a);
        rill_pgsink_destroy(b);
}

static void password_in_dsn_refused(void **s) {
        (void)s;
        assert_int_equal(rill_pgsink_check_dsn("host=127.0.0.1 password=hunter2", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "PGPASSWORD"));
        assert_null(strstr(err, "hunter2"));
        assert_int_equal(rill_pgsink_check_dsn("host=127.0.0.1 dbname=x", err, sizeof(err)), 0);
}

static void unreachable_server_is_one_clear_error(void **s) {
        (void)s;
        rill_pgsink_spec_t sp = spec();
        sp.dsn = "host=127.0.0.1 port=1 dbname=x user=y connect_timeout=2";
        assert_null(rill_pgsink_connect(&sp, err, sizeof(err)));
        assert_non_null(strstr(err, "127.0.0.1:1"));
        assert_null(strchr(err, '\n'));
}

/* ---- a TCP proxy that can freeze ----------------------------------------------------- */

/* One thread forwards every accepted connection to the real server. With
 * freeze_at_commit armed, the first client chunk that carries "COMMIT" is
 * swallowed and from then on nothing moves in either direction, while every
 * socket stays open: the client waits for an answer that never comes and the
 * server session sits idle in its transaction, holding its row locks. */
#define PROXY_MAX 16
static struct proxy {
        int lfd, up_port;
        char up_host[128], addr[32];
        int fd[PROXY_MAX][2]; /* [client, upstream]; -1 when free */
        atomic_int freeze_at_commit, frozen, stop;
        pthread_t th;
        int running;
} px;

static void proxy_close(int i) {
        close(px.fd[i][0]), close(px.fd[i][1]);
        px.fd[i][0] = px.fd[i][1] = -1;
}

static int forward(int i, int from) {
        char buf[65536];
        ssize_t n = read(px.fd[i][from], buf, sizeof(buf));
        if (n <= 0)
                return -1;
        if (from == 0 && atomic_load(&px.freeze_at_commit) && memmem(buf, (size_t)n, "COMMIT", 6)) {
                atomic_store(&px.frozen, 1);
                return 0;
        }
        for (ssize_t off = 0; off < n;) {
                ssize_t w = write(px.fd[i][!from], buf + off, (size_t)(n - off));
                if (w <= 0)
                        return -1;
                off += w;
        }
        return 0;
}

static void *proxy_main(void *arg) {
        (void)arg;
        while (!atomic_load(&px.stop)) {
                struct pollfd p[1 + 2 * PROXY_MAX];
                int n = 0, frozen = atomic_load(&px.frozen);
                p[n++] = (struct pollfd){.fd = frozen ? -1 : px.lfd, .events = POLLIN};
                for (int i = 0; i < PROXY_MAX; i++)
                        for (int j = 0; j < 2; j++)
                                p[n++] = (struct pollfd){
                                    .fd = frozen || px.fd[i][j] < 0 ? -1 : px.fd[i][j],
                                    .events = POLLIN};
                if (poll(p, (nfds_t)n, 50) <= 0)
                        continue;
                if (p[0].revents & POLLIN) {
                        int c = accept(px.lfd, NULL, NULL);
                        struct sockaddr_in a = {.sin_family = AF_INET,
                                                .sin_port = htons((uint16_t)px.up_port)};
                        inet_pton(AF_INET, px.up_host, &a.sin_addr);
                        int u = socket(AF_INET, SOCK_STREAM, 0);
                        int slot = -1;
                        for (int i = 0; i < PROXY_MAX && slot < 0; i++)
                                if (px.fd[i][0] < 0)
                                        slot = i;
                        if (c < 0 || slot < 0 || connect(u, (struct sockaddr *)&a, sizeof(a))) {
                                close(c), close(u);
                                continue;
                        }
                        px.fd[slot][0] = c, px.fd[slot][1] = u;
                }
                for (int i = 0; i < PROXY_MAX; i++)
                        for (int j = 0; j < 2; j++)
                                if (px.fd[i][0] >= 0 && (p[1 + 2 * i + j].revents & (POLLIN | POLLHUP | POLLERR)) &&
                                    forward(i, j))
                                        proxy_close(i);
        }
        for (int i = 0; i < PROXY_MAX; i++)
                if (px.fd[i][0] >= 0)
                        proxy_close(i);
        return NULL;
}

/* Start the proxy in front of RILL_PG_DSN's server; write a DSN through it. */
static void proxy_start(char *dsn, size_t size) {
        const char *base = itest_env("RILL_PG_DSN");
        char *e = NULL;
        PQconninfoOption *o = PQconninfoParse(base, &e);
        assert_non_null(o);
        snprintf(px.up_host, sizeof(px.up_host), "127.0.0.1");
        px.up_port = 5432;
        for (PQconninfoOption *i = o; i->keyword; i++) {
                if (!strcmp(i->keyword, "host") && i->val && *i->val)
                        snprintf(px.up_host, sizeof(px.up_host), "%s", i->val);
                if (!strcmp(i->keyword, "port") && i->val && *i->val)
                        px.up_port = atoi(i->val);
        }
        PQconninfoFree(o);
        for (int i = 0; i < PROXY_MAX; i++)
                px.fd[i][0] = px.fd[i][1] = -1;
        /* Listen on another loopback address with the server's own port, and
         * connect by hostaddr: libpq still matches the passfile entry by the
         * DSN's host and port, so the proxy needs no password of its own. */
        px.lfd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(px.lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)px.up_port)};
        int bound = 0;
        for (int i = 0; i < 32 && !bound; i++) {
                snprintf(px.addr, sizeof(px.addr), "127.0.%d.%d", 100 + (getpid() + i) % 100,
                         2 + (getpid() / 100 + i) % 250);
                inet_pton(AF_INET, px.addr, &a.sin_addr);
                bound = !bind(px.lfd, (struct sockaddr *)&a, sizeof(a));
        }
        if (!bound)
                fail_msg("the proxy found no free loopback address for port %d", px.up_port);
        assert_int_equal(listen(px.lfd, 16), 0);
        atomic_store(&px.stop, 0), atomic_store(&px.frozen, 0), atomic_store(&px.freeze_at_commit, 0);
        pthread_create(&px.th, NULL, proxy_main, NULL);
        px.running = 1;
        snprintf(dsn, size, "%s hostaddr=%s", base, px.addr);
}

/* Closing every socket also wakes a client still blocked on the proxy. */
static void proxy_stop(void) {
        if (!px.running)
                return;
        atomic_store(&px.stop, 1);
        pthread_join(px.th, NULL);
        close(px.lfd);
        px.running = 0;
}

static double mono_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- a server that stops answering mid-transaction ------------------------------------ */

/* The bounds, from the sink's defaults (pgsink.h): statement_timeout 5 s
 * plus the 2 s client margin for a statement that gets no answer; lock
 * timeout 3 s; idle_in_transaction_session_timeout 5 s. One second of slack
 * on each. Before the client-side timeouts the commit waited forever and the
 * new owner waited for the orphaned session's row lock until its own 15 s
 * statement timeout. */
#define FROZEN_COMMIT_BOUND_S 8.0
#define LOCK_WAIT_BOUND_S 4.0

static struct {
        rill_pgsink_t *pg;
        pthread_t th;
        int started;
        atomic_int done;
        int rc;
        double took;
        char err[512];
} zc;

static void *zombie_commit(void *arg) {
        (void)arg;
        double t0 = mono_s();
        zc.rc = rill_pgsink_commit(zc.pg, zc.err, sizeof(zc.err));
        zc.took = mono_s() - t0;
        atomic_store(&zc.done, 1);
        return NULL;
}

static int frozen_teardown(void **s) {
        (void)s;
        proxy_stop();
        if (zc.started)
                pthread_join(zc.th, NULL);
        zc.started = 0;
        rill_pgsink_destroy(zc.pg);
        zc.pg = NULL;
        return 0;
}

static void frozen_server_mid_commit_is_bounded(void **s) {
        (void)s;
        char dsn[512], zapp[64];
        snprintf(table, sizeof(table), "itest_frozen_%d", (int)getpid());
        snprintf(zapp, sizeof(zapp), "itest-frozen-%d", (int)getpid());
        proxy_start(dsn, sizeof(dsn));
        rill_pgsink_spec_t sp = spec();
        sp.dsn = dsn;
        sp.app_id = zapp;
        zc.pg = rill_pgsink_connect(&sp, err, sizeof(err));
        if (!zc.pg)
                fail_msg("%s", err);
        assert_int_equal(rill_pgsink_migrate(zc.pg, err, sizeof(err)), 0);
        int64_t ea = rill_pgsink_acquire_epoch(zc.pg, "t", 0, err, sizeof(err));
        assert_true(ea >= 1);
        result_t r = {"k", 1, 60000, 120000, 5, 1};
        add_result(zc.pg, &r);
        rill_pgsink_add_progress(zc.pg, "t", 0, 10, ea);
        /* the network goes away just before the COMMIT reaches the server */
        atomic_store(&px.freeze_at_commit, 1);
        double t0 = mono_s();
        pthread_create(&zc.th, NULL, zombie_commit, NULL);
        zc.started = 1;
        while (!atomic_load(&px.frozen) && mono_s() - t0 < 5)
                usleep(10000);
        assert_true(atomic_load(&px.frozen));

        /* the new owner (directly connected) waits for the orphan's row lock
         * at most lock_timeout, and says so */
        sp.dsn = itest_env("RILL_PG_DSN");
        rill_pgsink_t *b = rill_pgsink_connect(&sp, err, sizeof(err));
        if (!b)
                fail_msg("%s", err);
        double tb = mono_s();
        int64_t eb = rill_pgsink_acquire_epoch(b, "t", 0, err, sizeof(err));
        double waited = mono_s() - tb;
        if (waited > LOCK_WAIT_BOUND_S) {
                rill_pgsink_destroy(b);
                fail_msg("the new owner waited %.1f s for the orphaned session's lock (bound %.1f s; "
                         "result %lld: %s)", waited, LOCK_WAIT_BOUND_S, (long long)eb, eb < 0 ? err : "");
        }
        if (eb > 0) /* the orphan was already gone: fine, but say so */
                print_message("note: the orphaned session had already ended (%.1f s)\n", waited);
        else
                assert_non_null(strstr(err, "lock timeout"));

        /* the zombie's commit fails in bounded time with a clear error */
        while (!atomic_load(&zc.done) && mono_s() - t0 < FROZEN_COMMIT_BOUND_S + 2)
                usleep(20000);
        if (!atomic_load(&zc.done)) {
                rill_pgsink_destroy(b);
                fail_msg("the commit against a frozen server still waits after %.1f s (bound %.1f s)",
                         mono_s() - t0, FROZEN_COMMIT_BOUND_S);
        }
        print_message("frozen commit: rc=%d after %.1f s: %s\n", zc.rc, zc.took, zc.err);
        assert_int_equal(zc.rc, -1);
        assert_true(zc.took <= FROZEN_COMMIT_BOUND_S);
        assert_non_null(strstr(zc.err, "no answer"));
        assert_null(strchr(zc.err, '\n'));

        /* the server ended the orphaned session (idle in transaction): its
         * locks are free and the new owner takes the partition at once */
        if (eb < 0) {
                tb = mono_s();
                eb = rill_pgsink_acquire_epoch(b, "t", 0, err, sizeof(err));
                if (eb < 0)
                        fail_msg("the new owner still cannot take the partition: %s", err);
                assert_true(mono_s() - tb < 1.0);
        }
        assert_true(eb > ea);
        const char *pp[] = {zapp};
        PGresult *q1 = q("SELECT next_offset FROM rill_sink_progress WHERE app_id = $1", 1, pp);
        assert_int_equal(atoll(PQgetvalue(q1, 0, 0)), -1); /* nothing of the zombie's commit */
        PQclear(q1);

        /* the network comes back: the zombie reconnects and is fenced */
        atomic_store(&px.freeze_at_commit, 0);
        atomic_store(&px.frozen, 0);
        add_result(zc.pg, &r);
        rill_pgsink_add_progress(zc.pg, "t", 0, 10, ea);
        assert_int_equal(rill_pgsink_commit(zc.pg, err, sizeof(err)), 1);
        rill_pgsink_destroy(b);
}

/* ---- a batch too big for one statement ------------------------------------------------ */

/* A trigger that sleeps 1 ms per row and a 400 ms statement timeout given in
 * the DSN: 2000 rows cannot go in one statement. The caller replays the same
 * batch after each failure (as the worker's abort-and-retry does); the sink
 * must split it and finally commit every row exactly once. */
#define SPLIT_ROWS 2000
#define SPLIT_ATTEMPTS 12

static void oversized_batch_is_split(void **s) {
        (void)s;
        char dsn[512], sapp[64], sql[512];
        snprintf(table, sizeof(table), "itest_split_%d", (int)getpid());
        snprintf(sapp, sizeof(sapp), "itest-split-%d", (int)getpid());
        snprintf(dsn, sizeof(dsn), "%s options='-c statement_timeout=400'", itest_env("RILL_PG_DSN"));
        rill_pgsink_spec_t sp = spec();
        sp.dsn = dsn;
        sp.app_id = sapp;
        rill_pgsink_t *pg = rill_pgsink_connect(&sp, err, sizeof(err));
        if (!pg)
                fail_msg("%s", err);
        assert_int_equal(rill_pgsink_migrate(pg, err, sizeof(err)), 0);
        PGconn *c = PQconnectdb(itest_env("RILL_PG_DSN"));
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        snprintf(sql, sizeof(sql),
                 "CREATE FUNCTION %s_slow() RETURNS trigger LANGUAGE plpgsql AS"
                 " $$ BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END $$;"
                 " CREATE TRIGGER slow BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s_slow()",
                 table, table, table);
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                fail_msg("%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(c);
        int64_t ep = rill_pgsink_acquire_epoch(pg, "t", 0, err, sizeof(err));
        assert_true(ep >= 1);
        int rc = -1, attempt;
        long long want_sum = 0;
        for (attempt = 1; attempt <= SPLIT_ATTEMPTS && rc; attempt++) {
                char key[16];
                want_sum = 0;
                for (int i = 0; i < SPLIT_ROWS; i++) {
                        snprintf(key, sizeof(key), "k%d", i);
                        result_t r = {key, strlen(key), 60000, 120000, i, 1};
                        add_result(pg, &r);
                        want_sum += i;
                }
                rill_pgsink_add_progress(pg, "t", 0, SPLIT_ROWS, ep);
                double t0 = mono_s();
                rc = rill_pgsink_commit(pg, err, sizeof(err));
                print_message("attempt %d: rc=%d in %.2f s%s%s\n", attempt, rc, mono_s() - t0,
                              rc ? ": " : "", rc ? err : "");
                if (rc)
                        assert_non_null(strstr(err, "statement timeout"));
        }
        if (rc)
                fail_msg("%d rows still not written after %d attempts: %s", SPLIT_ROWS,
                         SPLIT_ATTEMPTS, err);
        assert_true(attempt > 2); /* the premise: the whole batch did time out */
        snprintf(sql, sizeof(sql), "SELECT count(*), sum(total_amount_usd), sum(sales_count) FROM %s",
                 table);
        res = q(sql, 0, NULL);
        assert_int_equal(atoll(PQgetvalue(res, 0, 0)), SPLIT_ROWS);
        assert_int_equal(atoll(PQgetvalue(res, 0, 1)), want_sum);
        assert_int_equal(atoll(PQgetvalue(res, 0, 2)), SPLIT_ROWS);
        PQclear(res);
        const char *pp[] = {sapp};
        res = q("SELECT next_offset FROM rill_sink_progress WHERE app_id = $1", 1, pp);
        assert_int_equal(atoll(PQgetvalue(res, 0, 0)), SPLIT_ROWS);
        PQclear(res);
        rill_pgsink_destroy(pg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(roundtrip_and_fencing), cmocka_unit_test(password_in_dsn_refused),
            cmocka_unit_test(unreachable_server_is_one_clear_error),
            cmocka_unit_test_teardown(frozen_server_mid_commit_is_bounded, frozen_teardown),
            cmocka_unit_test(oversized_batch_is_split)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
