/*
 * config.c -- the property map behind every rill program.
 *
 * A configuration is a table of typed properties (string, integer, bool),
 * each known by one key ("window.size.ms") that also names its flag
 * (--window-size-ms) and its environment variable (RILL_WINDOW_SIZE_MS).
 * Values are kept as validated strings, like librdkafka's own configuration.
 * "kafka.<prop>" keys are an open namespace passed through to librdkafka.
 *
 * Precedence when loading: defaults < file < environment < flags. The file
 * and environment are loaded first, the flags last, so a later source simply
 * overwrites an earlier one.
 *
 * Not thread-safe: built and read on the application thread before the
 * stream threads start; read-only afterwards.
 */
#include "rill.h"
#include "window.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* ---- the engine's properties ---------------------------------------------- */

static const rill_confdef_t engine_defs[] = {
    {"application.id", RILL_CONF_STR, NULL, 0, 0,
     "Application id: consumer group id, transactional id prefix and prefix of internal topics"},
    {"bootstrap.servers", RILL_CONF_STR, "127.0.0.1:9092", 0, 0, "Kafka bootstrap servers"},
    {"input.topic", RILL_CONF_STR, "sales-usd", 0, 0, "Input topic"},
    {"input.keyed", RILL_CONF_BOOL, "false", 0, 0,
     "Input is already keyed by the aggregation key (skips the repartition topic)"},
    {"output.topic", RILL_CONF_STR, "aggregated-sales", 0, 0, "Output topic for window results"},
    {"dlq.topic", RILL_CONF_STR, "", 0, 0,
     "Dead-letter topic for bad and late records (default: <input.topic>-dlq)"},
    /* bounded so that window end + grace of any event time stays inside
     * int64 and below the store's meta keys (engine/window.h) */
    {"window.size.ms", RILL_CONF_INT, "60000", 1, RILL_WINDOW_SIZE_MAX_MS, "Window size"},
    {"window.advance.ms", RILL_CONF_INT, "0", 0, RILL_WINDOW_SIZE_MAX_MS,
     "Hopping windows: a new window starts every this many ms (at most window.size.ms, at "
     "most 256 windows per event); 0 = tumbling (the window size)"},
    {"grace.ms", RILL_CONF_INT, "10000", 0, RILL_GRACE_MAX_MS,
     "Grace period: a window closes when stream time >= window end + grace"},
    {"commit.interval.ms", RILL_CONF_INT, "100", 1, 3600000, "Commit interval"},
    {"idle.timeout.ms", RILL_CONF_INT, "30000", 0, 86400000,
     "A caught-up partition without records for this long advances its event time to wall-clock time, so windows still close (0 = never)"},
    {"num.stream.threads", RILL_CONF_INT, "1", 1, 64, "Stream threads per process"},
    {"state.dir", RILL_CONF_STR, "./rill-state", 0, 0, "Directory of the local state stores"},
    {"pg.dsn", RILL_CONF_STR, "", 0, 0,
     "PostgreSQL connection string without password (use PGPASSWORD or PGPASSFILE)"},
    {"pg.table", RILL_CONF_STR, "aggregated_sales", 0, 0, "PostgreSQL table for window results"},
    {"group.instance.id", RILL_CONF_STR, "", 0, 0,
     "Static group membership id of this process (threads append -<n>)"},
    {"transaction.timeout.ms", RILL_CONF_INT, "10000", 1000, 900000,
     "Kafka transaction timeout: bounds how long a dead worker's open transaction blocks readers"},
    {"restore.timeout.ms", RILL_CONF_INT, "600000", 1000, 86400000,
     "Longest time a task may take to restore its store from the changelog"},
    {"restore.batch.records", RILL_CONF_INT, "20000", 1, 10000000,
     "Changelog records per RocksDB write batch during restore"},
    {"memory.limit.mb", RILL_CONF_INT, "1024", 128, 1048576,
     "Memory limit of the process in MB; set it to the container's limit. RocksDB, the write cache and the Kafka clients' queues are sized to fit it after a reserved overhead (docs/operations.md, Memory)"},
    /* below Kubernetes' default 30 s grace (deploy/k8s gives 30 s) */
    {"shutdown.timeout.ms", RILL_CONF_INT, "20000", 1000, 3600000,
     "Longest time from a stop (SIGTERM) to exit: what is unfinished then (a commit, the consumer's close) is abandoned, as safe as a crash; keep it below the supervisor's grace period"},
    {"http.port", RILL_CONF_INT, "0", 0, 65535,
     "Port of the HTTP endpoint (/healthz, /readyz, /metrics, /query); 0 = off"},
    {"log.level", RILL_CONF_STR, "info", 0, 0, "Log level: debug, info, warn, error"},
    {"log.format", RILL_CONF_STR, "logfmt", 0, 0, "Log format: logfmt or json"},
    {NULL, 0, NULL, 0, 0, NULL}};

/* ---- the map ------------------------------------------------------------------ */

typedef struct conf_entry {
        char *key;
        char *value;
        const rill_confdef_t *def; /* NULL for kafka.* */
} conf_entry_t;

struct rill_conf {
        conf_entry_t *entries;
        size_t cnt, size;
        const rill_confdef_t *extra;
};

static conf_entry_t *conf_find(const rill_conf_t *conf, const char *key) {
        for (size_t i = 0; i < conf->cnt; i++)
                if (!strcmp(conf->entries[i].key, key))
                        return &conf->entries[i];
        return NULL;
}

static const rill_confdef_t *def_find(const rill_conf_t *conf, const char *key) {
        for (const rill_confdef_t *d = engine_defs; d->key; d++)
                if (!strcmp(d->key, key))
                        return d;
        for (const rill_confdef_t *d = conf->extra; d && d->key; d++)
                if (!strcmp(d->key, key))
                        return d;
        return NULL;
}

static void conf_put(rill_conf_t *conf, const char *key, const char *value,
                     const rill_confdef_t *def) {
        conf_entry_t *e = conf_find(conf, key);
        if (e) {
                free(e->value);
                e->value = value ? strdup(value) : NULL;
                return;
        }
        if (conf->cnt == conf->size) {
                conf->size = conf->size ? conf->size * 2 : 32;
                conf->entries = realloc(conf->entries, conf->size * sizeof(*conf->entries));
        }
        e = &conf->entries[conf->cnt++];
        e->key = strdup(key);
        e->value = value ? strdup(value) : NULL;
        e->def = def;
}

rill_conf_t *rill_conf_new(const rill_confdef_t *extra) {
        rill_conf_t *conf = calloc(1, sizeof(*conf));
        conf->extra = extra;
        for (const rill_confdef_t *d = engine_defs; d->key; d++)
                conf_put(conf, d->key, d->def, d);
        for (const rill_confdef_t *d = extra; d && d->key; d++)
                conf_put(conf, d->key, d->def, d);
        return conf;
}

void rill_conf_destroy(rill_conf_t *conf) {
        if (!conf)
                return;
        for (size_t i = 0; i < conf->cnt; i++) {
                free(conf->entries[i].key);
                free(conf->entries[i].value);
        }
        free(conf->entries);
        free(conf);
}

/* ---- validation ------------------------------------------------------------ */

static int parse_int(const char *s, int64_t *out) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end)
                return -1;
        *out = v;
        return 0;
}

static int parse_bool(const char *s, int *out) {
        if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes"))
                *out = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no"))
                *out = 0;
        else
                return -1;
        return 0;
}

int rill_conf_set(rill_conf_t *conf, const char *key, const char *value,
                  char *errstr, size_t errstr_size) {
        if (!strncmp(key, "kafka.", 6) && key[6]) {
                conf_put(conf, key, value, NULL);
                return 0;
        }
        const rill_confdef_t *d = def_find(conf, key);
        if (!d) {
                snprintf(errstr, errstr_size, "unknown property \"%s\" (see --help)", key);
                return -1;
        }
        int64_t v;
        int b;
        switch (d->type) {
        case RILL_CONF_INT:
                if (parse_int(value, &v)) {
                        snprintf(errstr, errstr_size,
                                 "invalid value \"%s\" for %s: expected an integer", value, key);
                        return -1;
                }
                if (v < d->min || v > d->max) {
                        snprintf(errstr, errstr_size,
                                 "invalid value %s for %s: must be between %lld and %lld",
                                 value, key, (long long)d->min, (long long)d->max);
                        return -1;
                }
                break;
        case RILL_CONF_BOOL:
                if (parse_bool(value, &b)) {
                        snprintf(errstr, errstr_size,
                                 "invalid value \"%s\" for %s: expected true or false", value, key);
                        return -1;
                }
                value = b ? "true" : "false";
                break;
        case RILL_CONF_STR:
                break;
        }
        conf_put(conf, key, value, d);
        return 0;
}

const char *rill_conf_get(const rill_conf_t *conf, const char *key) {
        conf_entry_t *e = conf_find(conf, key);
        return e ? e->value : NULL;
}

int64_t rill_conf_get_int(const rill_conf_t *conf, const char *key) {
        const char *v = rill_conf_get(conf, key);
        int64_t i = 0;
        if (v)
                parse_int(v, &i);
        return i;
}

int rill_conf_get_bool(const rill_conf_t *conf, const char *key) {
        const char *v = rill_conf_get(conf, key);
        int b = 0;
        if (v)
                parse_bool(v, &b);
        return b;
}

void rill_conf_foreach_kafka(const rill_conf_t *conf,
                             void (*cb)(const char *, const char *, void *),
                             void *opaque) {
        for (size_t i = 0; i < conf->cnt; i++)
                if (!conf->entries[i].def && conf->entries[i].value)
                        cb(conf->entries[i].key + 6, conf->entries[i].value, opaque);
}

/* ---- names: key <-> flag <-> environment variable ---------------------------- */

static void key_to_flag(const char *key, char *buf, size_t size) {
        size_t i = 0;
        for (; key[i] && i + 1 < size; i++)
                buf[i] = key[i] == '.' ? '-' : key[i];
        buf[i] = '\0';
}

static void key_to_env(const char *key, char *buf, size_t size) {
        size_t n = (size_t)snprintf(buf, size, "RILL_");
        for (size_t i = 0; key[i] && n + 1 < size; i++, n++)
                buf[n] = key[i] == '.' || key[i] == '-' ? '_' : (char)toupper((unsigned char)key[i]);
        buf[n < size ? n : size - 1] = '\0';
}

/* ---- sources: file, environment, flags --------------------------------------- */

static char *trim(char *s) {
        while (isspace((unsigned char)*s))
                s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

int rill_conf_load_file(rill_conf_t *conf, const char *path, char *errstr,
                        size_t errstr_size) {
        FILE *fp = fopen(path, "r");
        if (!fp) {
                snprintf(errstr, errstr_size, "cannot read config file %s: %s", path,
                         strerror(errno));
                return -1;
        }
        char line[4096], err[512];
        int lineno = 0, rc = 0;
        while (fgets(line, sizeof(line), fp)) {
                lineno++;
                char *s = trim(line);
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: expected key=value, got \"%.60s\"", path, lineno, s);
                        rc = -1;
                        break;
                }
                *eq = '\0';
                if (rill_conf_set(conf, trim(s), trim(eq + 1), err, sizeof(err))) {
                        snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno, err);
                        rc = -1;
                        break;
                }
        }
        fclose(fp);
        return rc;
}

/* Every defined key may come from RILL_<KEY>. Unrelated RILL_* variables
 * (RILL_RUN_DIR, RILL_FAULT, ...) are not ours and are ignored. */
static int load_env(rill_conf_t *conf, char *errstr, size_t errstr_size) {
        char env[128], err[512];
        for (size_t i = 0; i < conf->cnt; i++) {
                if (!conf->entries[i].def)
                        continue;
                key_to_env(conf->entries[i].key, env, sizeof(env));
                const char *v = getenv(env);
                if (!v)
                        continue;
                char *key = strdup(conf->entries[i].key);
                int rc = rill_conf_set(conf, key, v, err, sizeof(err));
                free(key);
                if (rc) {
                        snprintf(errstr, errstr_size, "environment %s: %s", env, err);
                        return -1;
                }
        }
        return 0;
}

/* Map "--window-size-ms" back to "window.size.ms" by comparing with each
 * defined key's flag form. */
static const char *flag_to_key(const rill_conf_t *conf, const char *flag) {
        char buf[128];
        for (size_t i = 0; i < conf->cnt; i++) {
                if (!conf->entries[i].def)
                        continue;
                key_to_flag(conf->entries[i].key, buf, sizeof(buf));
                if (!strcmp(buf, flag))
                        return conf->entries[i].key;
        }
        return NULL;
}

int rill_conf_load_args(rill_conf_t *conf, int argc, char **argv, char *errstr,
                        size_t errstr_size) {
        const char *file = getenv("RILL_CONFIG");
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        rill_conf_print_help(conf, stdout);
                        return 1;
                }
                if (!strncmp(argv[i], "--config=", 9))
                        file = argv[i] + 9;
                else if (!strcmp(argv[i], "--config") && i + 1 < argc)
                        file = argv[++i];
        }
        if (file && *file && rill_conf_load_file(conf, file, errstr, errstr_size))
                return -1;
        if (load_env(conf, errstr, errstr_size))
                return -1;

        char err[512];
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                char name[256];
                const char *value = NULL;
                if (!strcmp(a, "--config")) {
                        i++;
                        continue;
                }
                if (!strncmp(a, "--config=", 9))
                        continue;
                if (!strcmp(a, "-X")) {
                        if (i + 1 >= argc) {
                                snprintf(errstr, errstr_size, "flag -X needs key=value");
                                return -1;
                        }
                        const char *kv = argv[++i];
                        const char *eq = strchr(kv, '=');
                        if (!eq || eq == kv) {
                                snprintf(errstr, errstr_size,
                                         "flag -X needs key=value, got \"%s\"", kv);
                                return -1;
                        }
                        snprintf(name, sizeof(name), "kafka.%.*s", (int)(eq - kv), kv);
                        if (rill_conf_set(conf, name, eq + 1, err, sizeof(err))) {
                                snprintf(errstr, errstr_size, "flag -X %s: %s", kv, err);
                                return -1;
                        }
                        continue;
                }
                if (strncmp(a, "--", 2)) {
                        snprintf(errstr, errstr_size,
                                 "unexpected argument \"%s\" (flags look like --name=value; see --help)", a);
                        return -1;
                }
                const char *eq = strchr(a, '=');
                size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
                if (nlen >= sizeof(name))
                        nlen = sizeof(name) - 1;
                memcpy(name, a + 2, nlen);
                name[nlen] = '\0';
                const char *key = flag_to_key(conf, name);
                if (!key) {
                        snprintf(errstr, errstr_size, "unknown flag --%s (see --help)", name);
                        return -1;
                }
                const rill_confdef_t *d = def_find(conf, key);
                if (eq)
                        value = eq + 1;
                else if (d->type == RILL_CONF_BOOL &&
                         (i + 1 >= argc || argv[i + 1][0] == '-'))
                        value = "true";
                else if (i + 1 < argc)
                        value = argv[++i];
                else {
                        snprintf(errstr, errstr_size, "flag --%s needs a value", name);
                        return -1;
                }
                if (rill_conf_set(conf, key, value, err, sizeof(err))) {
                        snprintf(errstr, errstr_size, "flag --%s: %s", name, err);
                        return -1;
                }
        }
        return 0;
}

void rill_conf_print_help(const rill_conf_t *conf, FILE *fp) {
        char flag[128], env[128];
        fprintf(fp, "Options (precedence: flags > environment > config file):\n"
                    "  --config FILE            config file of key=value lines (env RILL_CONFIG)\n"
                    "  -X KEY=VALUE             any librdkafka property (config file: kafka.KEY=VALUE)\n");
        for (size_t i = 0; i < conf->cnt; i++) {
                const rill_confdef_t *d = conf->entries[i].def;
                if (!d)
                        continue;
                key_to_flag(d->key, flag, sizeof(flag));
                key_to_env(d->key, env, sizeof(env));
                /* the value before flags, environment and file: the engine's
                 * default or the one the program set (e.g. application.id) */
                const char *v = conf->entries[i].value;
                fprintf(fp, "  --%-28s %s\n  %-30s env %s, default %s\n", flag, d->help, "",
                        env, v && *v ? v : "(none)");
        }
}
