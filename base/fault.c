/*
 * fault.c -- see fault.h. The armed point and its countdown are set once at
 * start; rill_fault() compares a string only when a point is armed.
 */
#include <stddef.h>
#include "fault.h"
#include "log.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *points[] = {"before_pg_commit",   "after_pg_commit", "before_kafka_commit",
                               "after_kafka_commit", "mid_restore",     "in_rebalance",
                               "results_in_flight",  "closing_windows", "abort_unanswered",
                               "rewind_refused",     "fetch_behind",    "position_behind",
                               "batch_refetch",      "kafka_commit_lost", "restore_begin", NULL};
static char armed[64];
static atomic_long remaining;
static long pause_ms; /* RILL_FAULT_PAUSE_MS: freeze the calling thread instead of dying */
static int every;     /* RILL_FAULT_EVERY=1 (with a pause): every hit from the n-th on */

int rill_fault_init(char *errstr, size_t errstr_size) {
        const char *spec = getenv("RILL_FAULT");
        armed[0] = '\0';
        if (!spec || !*spec)
                return 0;
        const char *colon = strchr(spec, ':');
        size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
        long n = colon ? atol(colon + 1) : 1;
        int known = 0;
        for (int i = 0; points[i]; i++)
                if (strlen(points[i]) == len && !strncmp(points[i], spec, len))
                        known = 1;
        if (!known || len >= sizeof(armed) || n < 1) {
                snprintf(errstr, errstr_size,
                         "invalid RILL_FAULT \"%s\": expected <point>[:<n>] with point one of "
                         "before_pg_commit, after_pg_commit, before_kafka_commit, after_kafka_commit, "
                         "mid_restore, restore_begin, "
                         "in_rebalance, results_in_flight, closing_windows, abort_unanswered, "
                         "rewind_refused, fetch_behind, position_behind, batch_refetch, "
                         "kafka_commit_lost",
                         spec);
                return -1;
        }
        memcpy(armed, spec, len);
        armed[len] = '\0';
        atomic_store(&remaining, n);
        const char *pause = getenv("RILL_FAULT_PAUSE_MS");
        pause_ms = pause && *pause ? atol(pause) : 0;
        if (pause_ms < 0 || pause_ms > 600000) {
                snprintf(errstr, errstr_size,
                         "invalid RILL_FAULT_PAUSE_MS \"%s\": expected 0..600000 ms", pause);
                return -1;
        }
        const char *ev = getenv("RILL_FAULT_EVERY");
        every = ev && !strcmp(ev, "1") && (pause_ms > 0 || !strcmp(armed, "abort_unanswered"));
        rill_log(RILL_LOG_WARN, "fault_armed", "point=%s hit=%ld pause_ms=%ld every=%d", armed, n,
                 pause_ms, every);
        return 0;
}

/* Count a hit of an armed point. @returns 1 when it fires now. */
static int fires(const char *point, int fail) {
        if (!armed[0] || strcmp(point, armed))
                return 0;
        long left = atomic_fetch_sub(&remaining, 1);
        if (left == 1 || (every && left < 1)) {
                if (left == 1)
                        rill_log(RILL_LOG_WARN, "fault_fired", "point=%s pause_ms=%ld action=%s",
                                 point, pause_ms, fail ? "fail_the_call" : pause_ms ? "pause" : "die");
                return 1;
        }
        return 0;
}

int rill_fault_fail(const char *point) { return fires(point, 1); }

void rill_fault_die(void) {
        kill(getpid(), SIGKILL);
        _exit(137); /* not reached */
}

void rill_fault(const char *point) {
        if (fires(point, 0)) {
                if (pause_ms) {
                        /* only this thread stops: librdkafka's threads (and their
                         * heartbeats) go on, as in a long stall of the thread */
                        struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000};
                        nanosleep(&ts, NULL);
                        return;
                }
                kill(getpid(), SIGKILL);
                _exit(137); /* not reached */
        }
}
