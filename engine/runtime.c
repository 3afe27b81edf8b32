/*
 * runtime.c -- rill_app: validates the configuration, prepares topics and the
 * Postgres schema, then runs N stream threads until stopped.
 *
 * Process identity: the stream threads' transactional ids are
 * <application.id>-<process id>-<thread>. The process id is the
 * group.instance.id when set, otherwise a random id kept in the state
 * directory, so a restarted worker reuses its transactional ids and fences
 * (and aborts) the transactions its previous incarnation left open, instead
 * of blocking read_committed readers until the transaction timeout. Two
 * processes must not share a state directory: it is locked (flock).
 *
 * Shutdown (SIGTERM, or a fatal error of any thread): every stream thread
 * leaves its run loop, commits, closes its consumer (the revoke callback
 * closes the tasks; the group is left, except by a static member) and tears
 * its Kafka clients down, every wait bounded by the shutdown deadline:
 * shutdown.timeout.ms after the stop was asked. The application thread
 * joins the threads until that deadline and no longer: a thread still busy
 * then (a broker or Postgres that does not answer) is abandoned with one
 * log line saying what it was doing, and rill_app_run returns
 * RILL_APP_ABANDONED for the program to end the process at once. That is
 * as safe as a crash, which exactly-once already covers: the transaction
 * left open is aborted by the next owner (same transactional id: fenced),
 * the Postgres writes are fenced by epoch, the store is a prefix of its
 * changelog. Kubernetes' terminationGracePeriodSeconds must exceed the
 * timeout (deploy/k8s).
 *
 * @locality rill_app_new/run/destroy: application thread; rill_app_stop:
 * any thread or a signal handler (engine/appstate.c: the stop, failure
 * and shutdown-phase state the stream threads share).
 */
#include "internal.h"
#include "window.h"
#include "fault.h"
#include "kafka_admin.h"
#include "log.h"
#include "memory.h"
#include "owners.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- state directory: lock and process id ----------------------------------------- */

static int prepare_state_dir(rill_app_t *app, char *errstr, size_t errstr_size) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof(dir), "%s/%s", app->state_dir, app->app_id);
        if (rill_wstore_mkdirs(dir)) {
                snprintf(errstr, errstr_size,
                         "cannot create state directory %s: %s (hint: set --state-dir to a "
                         "writable directory)",
                         dir, strerror(errno));
                return -1;
        }
        snprintf(path, sizeof(path), "%s/.lock", dir);
        app->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (app->lock_fd < 0 || flock(app->lock_fd, LOCK_EX | LOCK_NB)) {
                snprintf(errstr, errstr_size,
                         "state directory %s is in use by another process (hint: give each "
                         "worker its own --state-dir)",
                         dir);
                return -1;
        }
        const char *gi = rill_conf_get(app->conf, "group.instance.id");
        if (gi && *gi) {
                snprintf(app->process_id, sizeof(app->process_id), "%s", gi);
                return 0;
        }
        snprintf(path, sizeof(path), "%s/process.id", dir);
        FILE *fp = fopen(path, "r");
        if (fp) {
                if (fscanf(fp, "%63s", app->process_id) != 1)
                        app->process_id[0] = '\0';
                fclose(fp);
        }
        if (!app->process_id[0]) {
                unsigned char rnd[8];
                int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
                if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
                        snprintf(errstr, errstr_size, "cannot read /dev/urandom");
                        if (fd >= 0)
                                close(fd);
                        return -1;
                }
                close(fd);
                for (int i = 0; i < 8; i++)
                        snprintf(app->process_id + 2 * i, 3, "%02x", rnd[i]);
                fp = fopen(path, "w");
                if (!fp || fprintf(fp, "%s\n", app->process_id) < 0 || fclose(fp)) {
                        snprintf(errstr, errstr_size, "cannot write %s: %s", path,
                                 strerror(errno));
                        return -1;
                }
        }
        return 0;
}

/* ---- topics and schema ------------------------------------------------------------------ */

static void put_kafka_prop(const char *key, const char *value, void *opaque) {
        char err[256];
        rd_kafka_conf_set(opaque, key, value, err, sizeof(err));
}

static int prepare_topics(rill_app_t *app, char *errstr, size_t errstr_size) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", app->bootstrap, err, sizeof(err));
        rd_kafka_conf_set(c, "log.connection.close", "false", err, sizeof(err));
        /* the same security settings (TLS, SASL) as the stream threads' clients */
        rill_conf_foreach_kafka(app->conf, put_kafka_prop, c);
        rd_kafka_conf_set_log_cb(c, rill_kafka_log_cb);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, errstr_size, "cannot create Kafka client: %s", err);
                rd_kafka_conf_destroy(c);
                return -1;
        }
        int rc = -1;
        /* A topic just created may not have reached every broker's metadata
         * yet: look again for a bounded 5 s before calling it missing. */
        int n = 0;
        for (int tries = 0; tries < 25 && n == 0; tries++) {
                n = rill_kafka_partition_count(rk, app->input_topic, 10000, err, sizeof(err));
                if (n == 0)
                        usleep(200 * 1000);
        }
        if (n < 0) {
                snprintf(errstr, errstr_size,
                         "cannot reach Kafka at %s: %s (hint: is the broker running? check "
                         "--bootstrap-servers)",
                         app->bootstrap, err);
                goto done;
        }
        if (n == 0) {
                snprintf(errstr, errstr_size,
                         "input topic %s does not exist on %s (hint: create it with as many "
                         "partitions as workers may share, e.g. deploy/local/create-topics %s:12)",
                         app->input_topic, app->bootstrap, app->input_topic);
                goto done;
        }
        app->partitions = n;
        atomic_store(&app->sources, n);
        int out = 0;
        for (int tries = 0; tries < 25 && out == 0; tries++) {
                out = rill_kafka_partition_count(rk, app->output_topic, 10000, err, sizeof(err));
                if (out == 0)
                        usleep(200 * 1000);
        }
        if (out <= 0) {
                snprintf(errstr, errstr_size,
                         "output topic %s does not exist on %s (hint: create it, e.g. "
                         "deploy/local/create-topics %s:%d)",
                         app->output_topic, app->bootstrap, app->output_topic, n);
                goto done;
        }
        if (rill_kafka_create_topic(rk, app->dlq_topic, n, NULL, 15000, errstr, errstr_size) ||
            rill_kafka_create_topic(rk, app->changelog_topic, n, "compact", 15000, errstr,
                                    errstr_size) ||
            (!app->keyed && rill_kafka_create_topic(rk, app->repartition_topic, n, NULL, 15000,
                                                    errstr, errstr_size)))
                goto done;
        /* Internal topics made earlier fix the aggregation's partitioning.
         * Unkeyed input may have gained partitions since (they are more
         * sources of the same aggregation partitions); keyed input may not
         * (its partitions are the aggregation's: a seller moved to a new
         * partition would have its windows split between two tasks). */
        const char *internal[] = {app->changelog_topic, app->keyed ? NULL : app->repartition_topic};
        int agg = -1;
        for (int i = 0; i < 2; i++) {
                if (!internal[i])
                        continue;
                /* a topic created a moment ago may not be in metadata yet */
                int m = 0;
                for (int tries = 0; tries < 50 && m == 0; tries++) {
                        m = rill_kafka_partition_count(rk, internal[i], 10000, err, sizeof(err));
                        if (m == 0)
                                usleep(200 * 1000);
                }
                if (m <= 0 || (agg >= 0 && m != agg)) {
                        snprintf(errstr, errstr_size,
                                 "internal topic %s has %d partitions, expected %d (hint: reset "
                                 "the application: delete its internal topics)",
                                 internal[i], m, agg >= 0 ? agg : n);
                        goto done;
                }
                agg = m;
        }
        if (agg != n && (app->keyed || agg > n)) {
                snprintf(errstr, errstr_size,
                         "internal topic %s has %d partitions but input %s has %d (hint: %s)",
                         app->changelog_topic, agg, app->input_topic, n,
                         app->keyed ? "partitions added to keyed input move sellers between "
                                      "partitions; run without --input-keyed under a new "
                                      "--application-id, or reset the application (delete its "
                                      "internal topics)"
                                    : "reset the application: delete its internal topics");
                goto done;
        }
        if (agg != n)
                rill_log(RILL_LOG_WARN, "input_partitions_added",
                         "topic=%s from=%d to=%d action=more_sources_of_%d_aggregation_partitions",
                         app->input_topic, agg, n, agg);
        app->partitions = agg;
        rc = 0;
done:
        rd_kafka_destroy(rk);
        return rc;
}

/* Every wait inside a Kafka transaction must end before the coordinator
 * aborts it (transaction.timeout.ms): a transaction stays open for a commit
 * interval, then the commit cycle waits for deliveries, the offsets, the
 * Postgres statements and the commit. The cycle itself is bounded by the
 * transaction's deadline (worker.c); what a user's settings can contradict
 * is checked here, before anything starts. */
static int check_timeouts(rill_app_t *app, char *errstr, size_t errstr_size) {
        int64_t ttl = rill_conf_get_int(app->conf, "transaction.timeout.ms");
        if (app->commit_ms * 2 > ttl) {
                snprintf(errstr, errstr_size,
                         "commit.interval.ms (%lld) must be at most half of transaction.timeout.ms "
                         "(%lld): a transaction stays open for a commit interval and must still "
                         "commit before the coordinator aborts it (hint: raise "
                         "--transaction-timeout-ms or lower --commit-interval-ms)",
                         (long long)app->commit_ms, (long long)ttl);
                return -1;
        }
        int64_t pg = rill_pgsink_wait_bound_ms();
        if (app->pgspec.dsn && *app->pgspec.dsn && app->commit_ms + pg >= ttl) {
                snprintf(errstr, errstr_size,
                         "transaction.timeout.ms (%lld) must exceed commit.interval.ms (%lld) plus "
                         "the Postgres statement bound (%lld ms): the Postgres write runs inside the "
                         "Kafka transaction (hint: raise --transaction-timeout-ms)",
                         (long long)ttl, (long long)app->commit_ms, (long long)pg);
                return -1;
        }
        return 0;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

/* memory.limit.mb divided (engine/memory.h) once the partitions are known;
 * the stores take their share here, the Kafka clients in rill_worker_new. */
static int plan_memory(rill_app_t *app, char *errstr, size_t errstr_size) {
        rill_memplan_t mp;
        if (rill_memplan(rill_conf_get_int(app->conf, "memory.limit.mb"), app->partitions,
                         app->nthreads, &mp, errstr, errstr_size))
                return -1;
        rill_wstore_memory_t wm = {mp.block_cache_bytes, mp.write_buffer_bytes,
                                   mp.max_write_buffers, mp.write_cache_bytes};
        rill_wstore_set_memory(&wm);
        rill_log(RILL_LOG_INFO, "memory_plan",
                 "limit_mb=%lld reserved_mb=%lld budget_mb=%lld block_cache_bytes=%zu "
                 "write_buffer_bytes=%zu write_buffers=%d stores=%d write_cache_bytes=%zu "
                 "consumer_queued_min_messages=%s producer_max_messages=%s",
                 (long long)mp.limit_mb, (long long)mp.reserved_mb, (long long)mp.budget_mb,
                 mp.block_cache_bytes, mp.write_buffer_bytes, mp.max_write_buffers,
                 app->partitions, mp.write_cache_bytes, mp.consumer[0].value,
                 mp.producer[0].value);
        return 0;
}

rill_app_t *rill_app_new(rill_conf_t *conf, const rill_topology_t *topo, char *errstr,
                         size_t errstr_size) {
        if (rill_fault_init(errstr, errstr_size))
                return NULL;
        rill_app_t *app = calloc(1, sizeof(*app));
        app->lock_fd = -1;
        pthread_mutex_init(&app->fatal_lock, NULL);
        app->conf = conf;
        app->topo = *topo;
        app->app_id = rill_conf_get(conf, "application.id");
        app->bootstrap = rill_conf_get(conf, "bootstrap.servers");
        app->input_topic = rill_conf_get(conf, "input.topic");
        app->output_topic = rill_conf_get(conf, "output.topic");
        app->state_dir = rill_conf_get(conf, "state.dir");
        app->keyed = rill_conf_get_bool(conf, "input.keyed");
        app->nthreads = (int)rill_conf_get_int(conf, "num.stream.threads");
        app->window_ms = rill_conf_get_int(conf, "window.size.ms");
        app->grace_ms = rill_conf_get_int(conf, "grace.ms");
        app->advance_ms = rill_conf_get_int(conf, "window.advance.ms");
        app->commit_ms = rill_conf_get_int(conf, "commit.interval.ms");
        app->idle_ms = rill_conf_get_int(conf, "idle.timeout.ms");
        app->restore_timeout_ms = rill_conf_get_int(conf, "restore.timeout.ms");
        app->shutdown_ms = rill_conf_get_int(conf, "shutdown.timeout.ms");
        if (!app->advance_ms)
                app->advance_ms = app->window_ms;
        if (app->advance_ms > app->window_ms ||
            app->window_ms / app->advance_ms + (app->window_ms % app->advance_ms != 0) >
                RILL_WINDOW_HOPS_MAX) {
                snprintf(errstr, errstr_size,
                         "window.advance.ms %lld does not fit window.size.ms %lld: hopping "
                         "windows advance by at most their size and by at least 1/%d of it "
                         "(0 = tumbling)",
                         (long long)app->advance_ms, (long long)app->window_ms,
                         RILL_WINDOW_HOPS_MAX);
                goto fail;
        }
        if (!app->app_id || !*app->app_id) {
                snprintf(errstr, errstr_size, "application.id is required (--application-id)");
                goto fail;
        }
        const char *dlq = rill_conf_get(conf, "dlq.topic");
        snprintf(app->dlq_topic, sizeof(app->dlq_topic), "%s%s", dlq && *dlq ? dlq : app->input_topic,
                 dlq && *dlq ? "" : "-dlq");
        snprintf(app->repartition_topic, sizeof(app->repartition_topic), "%s-repartition",
                 app->app_id);
        snprintf(app->changelog_topic, sizeof(app->changelog_topic), "%s-%s-changelog",
                 app->app_id, topo->store_name ? topo->store_name : "windows");
        app->pgspec.dsn = rill_conf_get(conf, "pg.dsn");
        app->pgspec.table = rill_conf_get(conf, "pg.table");
        app->pgspec.key_column = topo->pg_key_column ? topo->pg_key_column : "key";
        app->pgspec.app_id = app->app_id;
        if (rill_aggregator_check(topo->aggregator, errstr, errstr_size))
                goto fail;
        app->agg = topo->aggregator;
        rill_aggregator_codec(app->agg, &app->codec);
        if (topo->pg_ncolumns < 0 || topo->pg_ncolumns > RILL_PG_COLUMNS_MAX ||
            (topo->pg_ncolumns && !topo->pg_columns)) {
                snprintf(errstr, errstr_size, "the topology has %d Postgres columns; 0 to %d",
                         topo->pg_ncolumns, RILL_PG_COLUMNS_MAX);
                goto fail;
        }
        _Static_assert(RILL_PG_COLUMNS_MAX == RILL_PGSINK_COLUMNS_MAX, "rill.h and pgsink.h");
        for (int i = 0; i < topo->pg_ncolumns; i++) {
                const rill_pg_column_t *c = &topo->pg_columns[i];
                int clash = c->name && (!strcmp(c->name, app->pgspec.key_column) ||
                                        !strcmp(c->name, "window_start") ||
                                        !strcmp(c->name, "window_end"));
                for (int j = 0; c->name && j < i; j++)
                        clash |= !strcmp(c->name, topo->pg_columns[j].name);
                if (clash) {
                        snprintf(errstr, errstr_size,
                                 "Postgres column %d is named \"%s\", which the results table "
                                 "already has (key, window_start, window_end and every column "
                                 "need names of their own)",
                                 i, c->name);
                        goto fail;
                }
                int v = rill_aggregator_value_index(app->agg, c->value);
                if (!c->name || !*c->name || v < 0) {
                        snprintf(errstr, errstr_size,
                                 "Postgres column %d (\"%s\") holds the figure \"%s\", which the "
                                 "aggregator does not have",
                                 i, c->name ? c->name : "", c->value ? c->value : "");
                        goto fail;
                }
                app->pg_value[i] = v;
                app->pgspec.columns[i] =
                    (rill_pgsink_column_t){c->name, app->agg->values[v].is_double};
        }
        app->pgspec.ncolumns = topo->pg_ncolumns;
        if (!topo->pg_ncolumns)
                app->pgspec.dsn = NULL; /* no Postgres sink in this application */
        if (rill_log_configure(rill_conf_get(conf, "log.level"), rill_conf_get(conf, "log.format"))) {
                snprintf(errstr, errstr_size,
                         "invalid log.level or log.format (levels: debug, info, warn, error; "
                         "formats: logfmt, json)");
                goto fail;
        }
        if (app->pgspec.dsn && *app->pgspec.dsn &&
            rill_pgsink_check_dsn(app->pgspec.dsn, errstr, errstr_size))
                goto fail;
        if (check_timeouts(app, errstr, errstr_size))
                goto fail;
        if (prepare_state_dir(app, errstr, errstr_size) ||
            prepare_topics(app, errstr, errstr_size))
                goto fail;
        if (plan_memory(app, errstr, errstr_size))
                goto fail;
        if (app->pgspec.dsn && *app->pgspec.dsn) {
                rill_pgsink_t *pg = rill_pgsink_connect(&app->pgspec, errstr, errstr_size);
                if (!pg)
                        goto fail;
                int rc = rill_pgsink_migrate(pg, errstr, errstr_size);
                rill_pgsink_destroy(pg);
                if (rc)
                        goto fail;
        }
        rill_log(RILL_LOG_INFO, "app_ready",
                 "application_id=%s process_id=%s input=%s partitions=%d keyed=%d "
                 "window_ms=%lld advance_ms=%lld grace_ms=%lld threads=%d",
                 app->app_id, app->process_id, app->input_topic, app->partitions, app->keyed,
                 (long long)app->window_ms, (long long)app->advance_ms,
                 (long long)app->grace_ms, app->nthreads);
        return app;
fail:
        rill_app_destroy(app);
        return NULL;
}

/* rill_query_lookup_fn over this process's stream threads. */
static int query_lookup(void *opaque, const char *key, size_t key_len, rill_qresult_t *res,
                        char *errstr, size_t errstr_size) {
        rill_app_t *app = opaque;
        int32_t p = rill_owners_key_partition(app, key, key_len);
        for (int i = 0; i < app->nthreads && app->workers; i++)
                if (rill_worker_query(app->workers[i], key, key_len, p, res, errstr,
                                      errstr_size) < 0) {
                        rill_log(RILL_LOG_ERROR, "query_failed", "thread=%d error=\"%s\"", i,
                                 errstr);
                        return -1;
                }
        return 0;
}

static int http_ok(int64_t port, rill_http_t *http) { return !port || http; }

/* ---- shutdown --------------------------------------------------------------------------- */

static const char *phase_name(int p) {
        static const char *names[] = {"running", "final_commit", "closing_consumer",
                                      "destroying_clients", "stopped"};
        return p >= 0 && p <= RILL_PHASE_STOPPED ? names[p] : "unknown";
}

static const char *phase_doing(int p) {
        switch (p) {
        case RILL_PHASE_RUNNING:
                return "still in its run loop: a commit cycle or a rebalance callback waiting "
                       "for Kafka or Postgres";
        case RILL_PHASE_FINAL_COMMIT:
                return "the shutdown commit, waiting for Kafka or Postgres";
        case RILL_PHASE_CLOSING:
                return "closing its consumer (revoking its tasks, leaving the group)";
        case RILL_PHASE_DESTROYING:
                return "tearing its Kafka clients down";
        default:
                return "exiting";
        }
}

/* Join the n started stream threads: without a bound while running (each
 * wait is 200 ms), once a stop is asked only until the shutdown deadline.
 * @returns how many threads are still running (abandoned at the deadline). */
static int join_threads(rill_app_t *app, int n, char *joined) {
        int left = n, told = 0;
        for (int i = 0; i < n; i++) {
                pthread_t *th = rill_worker_thread(app->workers[i]);
                for (;;) {
                        int64_t wait = 200;
                        if (atomic_load(&app->stop)) {
                                /* stop set without rill_app_stop: the deadline
                                 * starts now */
                                long long none = 0;
                                atomic_compare_exchange_strong(&app->stop_mono_ms, &none,
                                                               (long long)rill_now_mono_ms());
                                int64_t l = rill_app_shutdown_left_ms(app);
                                if (!told++) {
                                        pthread_mutex_lock(&app->fatal_lock);
                                        int fatal = app->fatal[0] != '\0';
                                        pthread_mutex_unlock(&app->fatal_lock);
                                        rill_log(RILL_LOG_INFO, "shutdown_started",
                                                 "threads=%d shutdown_timeout_ms=%lld reason=%s",
                                                 n, (long long)app->shutdown_ms,
                                                 fatal ? "fatal_error" : "stop_asked");
                                }
                                if (l <= 0)
                                        return left;
                                wait = l < wait ? l : wait;
                        }
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += (long)(wait % 1000) * 1000000L;
                        ts.tv_sec += wait / 1000 + ts.tv_nsec / 1000000000L;
                        ts.tv_nsec %= 1000000000L;
                        if (!pthread_timedjoin_np(*th, NULL, &ts))
                                break;
                }
                joined[i] = 1;
                left--;
        }
        return left;
}

/* One line per thread still running at the deadline, then the caller's
 * error. @returns RILL_APP_ABANDONED. */
static int abandon(rill_app_t *app, int n, const char *joined, int left, char *errstr,
                   size_t errstr_size) {
        for (int i = 0; i < n; i++) {
                int p = atomic_load(&app->phase[i]);
                if (joined[i])
                        continue;
                rill_log(RILL_LOG_ERROR, "shutdown_abandoned",
                         "thread=%s-%d phase=%s doing=\"%s\" shutdown_timeout_ms=%lld "
                         "action=\"exit now; the next owner of its tasks aborts its open "
                         "transaction\"",
                         app->process_id, i, phase_name(p), phase_doing(p),
                         (long long)app->shutdown_ms);
        }
        snprintf(errstr, errstr_size,
                 "shutdown did not finish within shutdown.timeout.ms (%lld ms): %d of %d stream "
                 "threads abandoned (hint: safe, the next owner aborts their open transactions; "
                 "is the broker or Postgres reachable? raise --shutdown-timeout-ms, keeping it "
                 "below the supervisor's grace period)",
                 (long long)app->shutdown_ms, left, n);
        return RILL_APP_ABANDONED;
}

int rill_app_run(rill_app_t *app, char *errstr, size_t errstr_size) {
        app->workers = calloc((size_t)app->nthreads, sizeof(*app->workers));
        app->metrics = calloc((size_t)app->nthreads, sizeof(*app->metrics));
        app->phase = calloc((size_t)app->nthreads, sizeof(*app->phase));
        for (int i = 0; i < app->nthreads; i++)
                rill_metrics_init(&app->metrics[i], app->partitions);
        int started = 0;
        rill_http_t *http = NULL;
        for (int i = 0; i < app->nthreads; i++) {
                app->workers[i] = rill_worker_new(app, i, errstr, errstr_size);
                if (!app->workers[i])
                        break;
        }
        int64_t port = rill_conf_get_int(app->conf, "http.port");
        if (port && app->workers[app->nthreads - 1]) {
                http = rill_http_start(app, (int)port, query_lookup, app, errstr, errstr_size);
                if (!http)
                        rill_app_stop(app);
                else
                        rill_log(RILL_LOG_INFO, "http_listening", "port=%lld", (long long)port);
        }
        for (int i = 0; i < app->nthreads && app->workers[i] && http_ok(port, http); i++) {
                if (pthread_create(rill_worker_thread(app->workers[i]), NULL, rill_worker_main, app->workers[i]))
                        break;
                started++;
        }
        char *joined = calloc(started > 0 ? (size_t)started : 1, 1);
        int left = join_threads(app, started, joined);
        if (left) { /* they still use everything: nothing is destroyed */
                int rc = abandon(app, started, joined, left, errstr, errstr_size);
                free(joined);
                return rc;
        }
        free(joined);
        if (atomic_load(&app->stop_mono_ms))
                rill_log(RILL_LOG_INFO, "shutdown_done", "threads=%d elapsed_ms=%lld "
                         "shutdown_timeout_ms=%lld", started,
                         (long long)(rill_now_mono_ms() - atomic_load(&app->stop_mono_ms)),
                         (long long)app->shutdown_ms);
        rill_http_stop(http); /* before the workers and metrics it reads go */
        for (int i = 0; i < app->nthreads; i++)
                rill_worker_destroy(app->workers[i]);
        for (int i = 0; i < app->nthreads; i++)
                rill_metrics_destroy(&app->metrics[i]);
        free(app->metrics);
        app->metrics = NULL;
        free(app->workers);
        app->workers = NULL;
        free(app->phase);
        app->phase = NULL;
        if (started < app->nthreads) {
                if (!*errstr)
                        snprintf(errstr, errstr_size, "cannot start stream threads");
                return -1;
        }
        if (app->fatal[0]) {
                snprintf(errstr, errstr_size, "%s", app->fatal);
                return -1;
        }
        return 0;
}

void rill_app_destroy(rill_app_t *app) {
        if (!app)
                return;
        if (app->lock_fd >= 0)
                close(app->lock_fd);
        pthread_mutex_destroy(&app->fatal_lock);
        free(app);
}
