"""A strict logfmt reader for the engine's log lines (base/log.c).

Grammar, one line: pairs separated by exactly one space; a pair is
key=value or a bare key (a flag, as in Go's go-logfmt); a key is one or more
bytes other than space, '=', '"' and control bytes; a value is either bare
(no space, '"', '=', or control byte; may be empty only as `key=`) or a
double-quoted string whose only escapes are \\" \\\\ \\n \\r \\t and \\uXXXX, with
no raw control byte inside. The line must be valid UTF-8.

    python3 tests/lib/logfmt.py FILE...   checks every line of each file
                                          (e.g. the crash suite's worker logs)
"""
import re
import sys

_KEY = re.compile(r'[^\s="\x00-\x1f\x7f]+')
_BARE = re.compile(r'[^\s="\x00-\x1f\x7f]*')
_ESC = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


class LogfmtError(ValueError):
    pass


def parse(line):
    """Returns [(key, value or None)]; raises LogfmtError with the offset."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LogfmtError(f"not UTF-8 at byte {e.start}")
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line:
        raise LogfmtError("embedded newline")
    out, i, n = [], 0, len(line)
    if n == 0:
        raise LogfmtError("empty line")
    while i < n:
        m = _KEY.match(line, i)
        if not m:
            raise LogfmtError(f"expected a key at offset {i}: {line[i:i + 20]!r}")
        key, i = m.group(), m.end()
        value = None
        if i < n and line[i] == "=":
            i += 1
            if i < n and line[i] == '"':
                i += 1
                buf = []
                while True:
                    if i >= n:
                        raise LogfmtError("unterminated quoted value")
                    c = line[i]
                    if c == '"':
                        i += 1
                        break
                    if ord(c) < 0x20 or c == "\x7f":
                        raise LogfmtError(f"raw control byte {ord(c):#x} in a quoted value at offset {i}")
                    if c == "\\":
                        e = line[i + 1:i + 2]
                        if e in _ESC:
                            buf.append(_ESC[e])
                            i += 2
                        elif e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", line[i + 2:i + 6]):
                            buf.append(chr(int(line[i + 2:i + 6], 16)))
                            i += 6
                        else:
                            raise LogfmtError(f"bad escape {line[i:i + 2]!r} at offset {i}")
                        continue
                    buf.append(c)
                    i += 1
                value = "".join(buf)
            else:
                m = _BARE.match(line, i)
                value, i = m.group(), m.end()
        out.append((key, value))
        if i < n:
            if line[i] != " ":
                raise LogfmtError(f"expected a space at offset {i}: {line[max(0, i - 20):i + 20]!r}")
            i += 1
            if i >= n or line[i] == " ":
                raise LogfmtError(f"empty pair at offset {i}")
    return out


def check_file(path):
    """Returns the problems found, as 'path:line: why: text'."""
    problems = []
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                parse(raw)
            except LogfmtError as e:
                problems.append(f"{path}:{no}: {e}: {raw[:300]!r}")
    return problems


if __name__ == "__main__":
    bad = [p for path in sys.argv[1:] for p in check_file(path)]
    print("\n".join(bad) if bad else f"{len(sys.argv) - 1} file(s): every line is logfmt")
    sys.exit(1 if bad else 0)
