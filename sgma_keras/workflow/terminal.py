"""Text for a terminal: its width, and log lines wrapped to it.

A line wider than the terminal wraps onto the next screen row, and a progress line
redrawn with a carriage return then leaves the wrapped rows behind. So on a terminal
every log line is wrapped to the width here (continuation rows indented under the
message), never cutting a `name value` pair apart; to a file or a pipe a record stays
one line. Imports no framework (the command lines use it before any loads).
"""

import logging
import os
import re

LOG_FORMAT = "%(asctime)s %(message)s"

# A value that stays with the word before it when a line is wrapped: a number, a
# percentage, nan/inf, n/a, none.
_VALUE = re.compile(r"[-+]?(\d[\d.,]*(e[-+]?\d+)?%?|nan|inf|n/a|none)[,;)]?", re.IGNORECASE)


def terminal_width(stream):
    """The columns of the terminal `stream` writes to, or None when it is not a terminal."""
    try:
        if not stream.isatty():
            return None
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):
        return None


def _units(text):
    """The words of `text`, each `name value` pair kept as one unit."""
    units = []
    for word in text.split():
        glued = units and (word == "=" or units[-1].endswith(" =")
                           or (_VALUE.fullmatch(word) and not _VALUE.fullmatch(units[-1])))
        if glued:
            units[-1] += " " + word
        else:
            units.append(word)
    return units


def wrap_line(text, width, first_width=None):
    """`text` as lines of at most `width` characters (the first: `first_width`),
    broken between words; a `name value` pair moves as one, a word longer than a
    line (a path) is cut."""
    first_width = width if first_width is None else first_width
    lines, current = [], ""
    for unit in _units(text):
        limit = first_width if not lines else width
        if current and len(current) + 1 + len(unit) <= limit:
            current += " " + unit
            continue
        if current:
            lines.append(current)
            limit = width
        while len(unit) > limit:
            lines.append(unit[:limit])
            unit, limit = unit[limit:], width
        current = unit
    lines.append(current)
    return lines


class TerminalFormatter(logging.Formatter):
    """Formats as `LOG_FORMAT`; on a terminal, wraps each message to the terminal's
    width (read at each record: the window may be resized), continuation rows
    indented under the message."""

    def __init__(self, stream, fmt=LOG_FORMAT):
        super().__init__(fmt)
        self.stream = stream

    def format(self, record):
        text = super().format(record)
        width = terminal_width(self.stream)
        message = record.getMessage()
        if width is None or width < 20 or not text.endswith(message):
            return text
        head = text[: len(text) - len(message)]
        indent = len(head) if len(head) <= width // 2 else 4
        rows = []
        for number, line in enumerate(message.splitlines() or [""]):
            first = width - len(head) if number == 0 else width - indent
            if len(line) <= first:
                rows.append(("" if number == 0 else " " * indent) + line)
                continue
            wrapped = wrap_line(line, width - indent, first)
            rows.append(("" if number == 0 else " " * indent) + wrapped[0])
            rows += [" " * indent + row for row in wrapped[1:]]
        return head + "\n".join(rows)


def wrap_text(text, stream):
    """`text` (lines printed by a command) wrapped to the terminal of `stream`,
    continuation rows indented by two; unchanged when `stream` is not a terminal."""
    width = terminal_width(stream)
    if width is None or width < 20:
        return text
    rows = []
    for line in text.splitlines():
        if len(line) <= width:
            rows.append(line)
            continue
        lead = " " * (len(line) - len(line.lstrip()))
        indent = lead + "  " if len(lead) + 2 <= width // 2 else "  "
        wrapped = wrap_line(line.strip(), width - len(indent), width - len(lead))
        rows += [lead + wrapped[0]] + [indent + row for row in wrapped[1:]]
    return "\n".join(rows)
