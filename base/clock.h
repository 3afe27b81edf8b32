/*
 * clock.h -- the two clocks every layer reads.
 *
 * Monotonic milliseconds for every bound and interval (never steps back);
 * wall-clock milliseconds only where time is data: idle advances, result
 * timestamps. @locality any thread.
 */
#ifndef RILL_CLOCK_H
#define RILL_CLOCK_H

#include <stdint.h>

int64_t rill_now_mono_ms(void);
int64_t rill_now_wall_ms(void);

#endif
