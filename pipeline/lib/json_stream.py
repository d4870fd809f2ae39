"""A JSON file whose top level is an object, read one array item at a time (COCO annotation files).

    JSONObjectStream(path, chunk_chars).items(stream_keys) -> (key, index, item) ...
        every item of the top-level arrays named in stream_keys, and (key, None, value) for every
        other top-level value, in file order; memory holds one item and one text buffer
    JSONObjectStream.arrays      the stream keys whose value was an array, as read so far
    MalformedJSONError           the file does not parse, or lacks the structure a COCO file needs

Used by pipeline/lib/annotations.py (two streaming passes over a COCO file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path


class MalformedJSONError(ValueError):
    """A JSON file that does not parse, or lacks the structure a COCO annotation file needs."""


JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
JSON_DELIMITERS = frozenset(" \t\n\r,]}:")
_DECODER = json.JSONDecoder()


class JSONObjectStream:
    """Reads a JSON file whose top level is an object, holding one array item at a time.

    ``items(stream_keys)`` yields ``(key, index, item)`` for every item of the top-level arrays
    named in `stream_keys` and ``(key, None, value)`` for every other top-level value, in file
    order. Each value is parsed by the C decoder (``json.JSONDecoder.raw_decode``) from a text
    buffer refilled `chunk_chars` at a time, so memory holds one item plus one buffer, not the file.
    Errors raise MalformedJSONError naming the file.
    """

    def __init__(self, path: Path, chunk_chars: int = 1 << 20) -> None:
        self.path, self.chunk_chars = Path(path), chunk_chars
        self.buf, self.pos, self.eof = "", 0, False
        self._file = None
        #: the stream keys whose value was an array (possibly empty), as read so far
        self.arrays: set[str] = set()

    def _error(self, reason: str) -> MalformedJSONError:
        return MalformedJSONError(f"malformed annotation JSON in {self.path}: {reason}")

    def _fill(self, chars: int) -> bool:
        """Append up to `chars` characters to the buffer (dropping what was consumed); False at EOF."""
        chunk = self._file.read(chars)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file), not consumed."""
        while True:
            self.pos = JSON_WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self._fill(self.chunk_chars):
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def _expect(self, chars: str, where: str) -> str:
        c = self._peek()
        if c == "" or c not in chars:
            raise self._error(f"expected {' or '.join(repr(x) for x in chars)} {where}, found {c or 'end of file'!r}")
        self.pos += 1
        return c

    def _value(self) -> object:
        """Decode the next JSON value; a value cut by the buffer's end is retried with more text."""
        grow = self.chunk_chars
        while True:
            self._peek()
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self._fill(grow):
                    grow *= 2  # an item longer than the buffer: read more at each retry
                    continue
                raise self._error(str(e)) from None
            # A number cut by the buffer's end ("6." of "6.75") still decodes: a scalar counts only
            # when a delimiter follows it (or the file ends).
            cut = end == len(self.buf) or self.buf[end] not in JSON_DELIMITERS
            if cut and not isinstance(value, dict | list | str) and not self.eof and self._fill(grow):
                grow *= 2
                continue
            self.pos = end
            return value

    def items(self, stream_keys: frozenset[str] | set[str] = frozenset()) -> Iterator[tuple[str, int | None, object]]:
        try:
            self._file = open(self.path, encoding="utf-8")  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {self.path}") from None
        try:
            self.buf, self.pos, self.eof = "", 0, False
            if self._peek() != "{":
                raise self._error("the top level is not a JSON object")
            self.pos += 1
            yield from self._members(stream_keys)
            if self._peek() != "":
                raise self._error("text after the top-level object")
        except UnicodeDecodeError as e:
            raise self._error(str(e)) from None
        finally:
            self._file.close()
            self.buf, self._file = "", None

    def _members(self, stream_keys: frozenset[str] | set[str]) -> Iterator[tuple[str, int | None, object]]:
        """The top-level object's members after its "{", through its "}"."""
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise self._error(f"object key {key!r} is not a string")
            self._expect(":", f"after key {key!r}")
            if key in stream_keys and self._peek() == "[":
                self.pos += 1
                self.arrays.add(key)
                for index, item in enumerate(self._array_items(key)):
                    yield key, index, item
            else:
                yield key, None, self._value()
            if self._expect(",}", "between top-level keys") == "}":
                return

    def _array_items(self, key: str) -> Iterator[object]:
        """The items of an array after its "[", through its "]"."""
        if self._peek() == "]":
            self.pos += 1
            return
        while True:
            yield self._value()
            if self._expect(",]", f"between items of {key!r}") == "]":
                return
