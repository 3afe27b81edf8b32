/*
 * json.h -- writing a JSON string literal (the only JSON the engine writes
 * by hand: keys in HTTP answers; the sales app uses it for its output).
 */
#ifndef RILL_JSON_H
#define RILL_JSON_H
#include <stddef.h>

/** Write s (UTF-8) as a quoted JSON string into buf, escaping '"', '\' and
 *  control characters. @returns the length written, or 0 if it did not fit. */
size_t rill_json_string(const char *s, size_t len, char *buf, size_t size);

#endif
