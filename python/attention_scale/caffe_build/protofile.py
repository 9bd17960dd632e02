"""A small structural reader for .proto files: enough to find messages, fields and braces.

It is not a protobuf compiler. It tokenises (skipping comments and string literals) so that
braces and statements are found reliably, and keeps character offsets so that callers can cut
and splice the original text verbatim.
"""
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

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
    reserved_names: List[str] = field(default_factory=list)   # `reserved "name";`
    nested_names: List[str] = field(default_factory=list)     # messages and enums defined inside
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
    """Return the top-level messages of a .proto text with their direct fields (those inside
    a `oneof` included: they share the message's numbers and names)."""
    tokens = tokenize(text)
    messages: List[Message] = []
    depth = 0
    current: Optional[Message] = None
    in_oneof = False  # reading the body of a `oneof` directly inside `current`
    stmt: List[Token] = []  # tokens of the statement being read in `current` (or its oneof)
    for tok in tokens:
        if tok.text == "{":
            if depth == 0 and len(stmt) == 2 and stmt[0].text == "message":
                current = Message(stmt[1].text, stmt[0].start, tok.end, tok.end)
            elif depth == 1 and current is not None and stmt and stmt[0].text == "oneof":
                in_oneof = True
            elif depth == 1 and current is not None and len(stmt) == 2 \
                    and stmt[0].text in ("message", "enum"):
                current.nested_names.append(stmt[1].text)
            elif current is not None and (depth == 1 or (depth == 2 and in_oneof)):
                _read_group(current, stmt, tok.start)
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
            if depth <= 1:
                in_oneof = False
            stmt = []
        elif current is not None and (depth == 1 or (depth == 2 and in_oneof)):
            if tok.text == ";":
                _read_statement(current, stmt, tok.end)
                stmt = []
            else:
                stmt.append(tok)
        elif depth == 0:
            stmt = [] if tok.text == ";" else stmt + [tok]
    if depth != 0:
        raise ProtoSyntaxError("unbalanced braces: the file ends inside a block")
    return messages


def declared_syntax(text: str) -> Tuple[str, str, int]:
    """The file's top-level `syntax = "...";` or `edition = "...";` statement as (keyword, value,
    line); ("syntax", "proto2", 0) where there is none (protoc's default)."""
    tokens = tokenize(text)
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.kind == "punct" and tok.text in ("{", "}"):
            depth += 1 if tok.text == "{" else -1
        elif (depth == 0 and tok.kind == "word" and tok.text in ("syntax", "edition")
              and i + 2 < len(tokens) and tokens[i + 1].text == "="
              and tokens[i + 2].kind == "string"):
            return tok.text, tokens[i + 2].text[1:-1], text.count("\n", 0, tok.start) + 1
    return "syntax", "proto2", 0


def _read_statement(msg: Message, stmt: List[Token], end: int) -> None:
    if not stmt:
        return
    words = [t.text for t in stmt]
    if words[0] in ("reserved", "extensions"):
        msg.blocked_ranges.extend(_parse_range_list(stmt[1:]))
        if words[0] == "reserved":
            msg.reserved_names.extend(t.text[1:-1] for t in stmt[1:] if t.kind == "string")
        return
    if words[0] == "map" and ">" in words:   # map<K, V> name = N;
        rest = stmt[words.index(">") + 1:]
        if len(rest) >= 3 and rest[1].text == "=" and rest[2].kind == "number":
            msg.fields.append(Field("", "".join(words[:words.index(">") + 1]), rest[0].text,
                                    int(rest[2].text, 0), stmt[0].start, end))
        return
    if words[0] in ("option", "oneof", "message", "enum", "extend"):
        return
    label = words[0] if words[0] in ("optional", "required", "repeated") else ""
    rest = stmt[1:] if label else stmt
    if len(rest) >= 4 and rest[2].text == "=" and rest[3].kind == "number":
        msg.fields.append(Field(label, rest[0].text, rest[1].text, int(rest[3].text, 0),
                                stmt[0].start, end))


def _read_group(msg: Message, stmt: List[Token], end: int) -> None:
    """`[label] group Name = N {`: a field named name.lower() (as protoc names it) numbered N."""
    words = [t.text for t in stmt]
    if words and words[0] in ("optional", "required", "repeated"):
        words = words[1:]
    if len(words) >= 4 and words[0] == "group" and words[2] == "=":
        try:
            number = int(words[3], 0)
        except ValueError:
            return
        msg.fields.append(Field("group", words[1], words[1].lower(), number, stmt[0].start, end))


def top_level_names(text: str) -> List[Tuple[str, str, int]]:
    """(keyword, name, offset) of every top-level `message`, `enum` and `service`: the names
    that share the file's package scope."""
    found, depth, stmt = [], 0, []
    for tok in tokenize(text):
        if tok.text == "{":
            if depth == 0 and len(stmt) == 2 and stmt[0].text in ("message", "enum", "service"):
                found.append((stmt[0].text, stmt[1].text, stmt[0].start))
            depth, stmt = depth + 1, []
        elif tok.text == "}":
            depth, stmt = depth - 1, []
        elif depth == 0:
            stmt = [] if tok.text == ";" else stmt + [tok]
    return found


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
