/*
 * appstate.c -- the state of a running application that its threads share:
 * the stop flag and when it was asked (the shutdown deadline), the first
 * fatal error, and each stream thread's shutdown phase. Below runtime.c and
 * worker.c, which both use it: a stream thread records its failure or its
 * phase here instead of calling back into the runtime that started it.
 *
 * @locality rill_app_stop: any thread or a signal handler (async-signal-
 * safe); rill_app_fail, rill_app_set_phase, rill_app_shutdown_left_ms: any
 * thread (a lock for the error, atomics for the rest).
 */
#include "internal.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void rill_app_fail(rill_app_t *app, const char *fmt, ...) {
        pthread_mutex_lock(&app->fatal_lock);
        if (!app->fatal[0]) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(app->fatal, sizeof(app->fatal), fmt, ap);
                va_end(ap);
                rill_log(RILL_LOG_ERROR, "fatal", "error=\"%s\"", app->fatal);
        }
        pthread_mutex_unlock(&app->fatal_lock);
        rill_app_stop(app);
}

/* async-signal-safe: clock_gettime and lock-free atomics only */
void rill_app_stop(rill_app_t *app) {
        long long none = 0;
        atomic_compare_exchange_strong(&app->stop_mono_ms, &none, (long long)rill_now_mono_ms());
        atomic_store(&app->stop, 1);
}

int64_t rill_app_shutdown_left_ms(rill_app_t *app) {
        int64_t t = atomic_load(&app->stop_mono_ms);
        return t ? t + app->shutdown_ms - rill_now_mono_ms() : app->shutdown_ms;
}

void rill_app_set_phase(rill_app_t *app, int index, rill_phase_t phase) {
        if (app->phase)
                atomic_store(&app->phase[index], (int)phase);
}
