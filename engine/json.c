/*
 * json.c -- see json.h.
 */
#include "json.h"

#include <stdio.h>

size_t rill_json_string(const char *s, size_t len, char *buf, size_t size) {
        size_t n = 0;
        if (size < 3)
                return 0;
        buf[n++] = '"';
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\') {
                        if (n + 3 >= size)
                                return 0;
                        buf[n++] = '\\';
                        buf[n++] = (char)c;
                } else if (c < 0x20) {
                        if (n + 8 >= size)
                                return 0;
                        n += (size_t)snprintf(buf + n, size - n, "\\u%04x", c);
                } else {
                        if (n + 2 >= size)
                                return 0;
                        buf[n++] = (char)c;
                }
        }
        buf[n++] = '"';
        buf[n] = '\0';
        return n;
}
