"""A small structural reader for .proto files: enough to find messages, fields and braces.

It is not a protobuf compiler. It tokenises (skipping comments and string literals) so that
braces and statements are found reliably, and keeps character offsets so that callers can cut
and splice the original text verbatim.
"""
import re
from dataclasses import dataclass, field
from typing import List, Optional

_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<line_comment>//[^\n]*)|(?P<block_comment>/\*.*?\*/)'
    r'|(?P<string>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')'
    r'|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|(?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))'
    r'|(?P<punct>[{}\[\]();=<>,:/-])',
    re.S)


class ProtoSyntaxError(ValueError):
    """The text is not a .proto file this reader understands."""


@dataclass
class Token:
    kind: str
    text: str
    start: int
    end: int


def tokenize(text: str) -> List[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise ProtoSyntaxError(f"unexpected character {text[pos]!r} at line {line}")
        kind = m.lastgroup
        if kind not in ("ws", "line_comment", "block_comment"):
            tokens.append(Token(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return tokens


@dataclass
class Field:
    label: str
    type: str
    name: str
    number: int
    start: int   # offset of the statement's first token
    end: int     # offset just past its ';'


@dataclass
class Message:
    name: str
    start: int        # offset of the 'message' keyword
    body_start: int   # offset just past '{'
    end: int          # offset just past the closing '}'
    fields: List[Field] = field(default_factory=list)
    # (low, high) number ranges that plain fields may not use: reserved and extensions
    blocked_ranges: List[tuple] = field(default_factory=list)
    close_brace: int = 0  # offset of the closing '}'


_MAX_FIELD = 536870911


def _parse_range_list(toks: List[Token]) -> List[tuple]:
    ranges, i = [], 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "number":
            low = int(t.text, 0)
            high = low
            if i + 2 < len(toks) and toks[i + 1].text == "to":
                hi = toks[i + 2].text
                high = _MAX_FIELD if hi == "max" else int(hi, 0)
                i += 2
            ranges.append((low, high))
        i += 1
    return ranges


def parse_messages(text: str) -> List[Message]:
    """Return the top-level messages of a .proto text with their direct fields."""
    tokens = tokenize(text)
    messages: List[Message] = []
    depth = 0
    current: Optional[Message] = None
    stmt: List[Token] = []  # tokens of the statement being read at depth 1 of `current`
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.text == "{":
            if depth == 0 and i >= 2 and tokens[i - 2].text == "message":
                current = Message(tokens[i - 1].text, tokens[i - 2].start, tok.end, tok.end)
            depth += 1
            stmt = []
        elif tok.text == "}":
            depth -= 1
            if depth < 0:
                raise ProtoSyntaxError(f"unbalanced '}}' at offset {tok.start}")
            if depth == 0 and current is not None:
                current.end = tok.end
                current.close_brace = tok.start
                messages.append(current)
                current = None
            stmt = []
        elif depth == 1 and current is not None:
            if tok.text == ";":
                _read_statement(current, stmt, tok.end)
                stmt = []
            else:
                stmt.append(tok)
        i += 1
    if depth != 0:
        raise ProtoSyntaxError("unbalanced braces: the file ends inside a block")
    return messages


def _read_statement(msg: Message, stmt: List[Token], end: int) -> None:
    if not stmt:
        return
    words = [t.text for t in stmt]
    if words[0] in ("reserved", "extensions"):
        msg.blocked_ranges.extend(_parse_range_list(stmt[1:]))
        return
    if words[0] in ("option", "oneof", "map", "message", "enum", "extend"):
        return
    label = words[0] if words[0] in ("optional", "required", "repeated") else ""
    rest = stmt[1:] if label else stmt
    if len(rest) >= 4 and rest[2].text == "=" and rest[3].kind == "number":
        msg.fields.append(Field(label, rest[0].text, rest[1].text, int(rest[3].text, 0),
                                stmt[0].start, end))


def find_message(messages: List[Message], name: str) -> Optional[Message]:
    for m in messages:
        if m.name == name:
            return m
    return None


def line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def leading_comment_start(text: str, offset: int) -> int:
    """Start of the block of '//' comment lines directly above the line holding `offset`."""
    start = line_start(text, offset)
    while start > 0:
        prev = line_start(text, start - 1)
        if text[prev:start].strip().startswith("//"):
            start = prev
        else:
            break
    return start
