"""Adding the project's parameter messages and LayerParameter fields to a Caffe's caffe.proto.

The project declares its parameters once, in caffe_layers/proto/attention_scale.proto. This module
copies the three messages verbatim to the end of the target's caffe.proto and the fields of
`LayerParameterFields` into its `LayerParameter`, each between marker comments, so that the
operation is idempotent and `strip_injection` restores the original text byte for byte.
"""
from dataclasses import dataclass
from typing import List, Optional

from .protofile import (Field, ProtoSyntaxError, declared_syntax, find_message,
                        leading_comment_start, line_start, parse_messages, top_level_names)

FIELDS_BEGIN = ("// >>> attention-to-scale fields "
                "(added by tools/inject_layers.py; undo with --remove)")
FIELDS_END = "// <<< attention-to-scale fields"
MESSAGES_BEGIN = ("// >>> attention-to-scale messages "
                  "(added by tools/inject_layers.py; undo with --remove)")
MESSAGES_END = "// <<< attention-to-scale messages"

FIELDS_MESSAGE = "LayerParameterFields"


class ProtoConflict(RuntimeError):
    """The target proto already uses one of our names or numbers for something else."""


@dataclass
class ProjectProto:
    """What the project adds: message definitions (verbatim text) and LayerParameter fields."""
    message_names: List[str]
    messages_text: str
    fields: List[Field]
    field_lines: List[str]


def load_project_proto(text: str) -> ProjectProto:
    messages = parse_messages(text)
    holder = find_message(messages, FIELDS_MESSAGE)
    if holder is None:
        raise ProtoSyntaxError(f"the project proto has no message {FIELDS_MESSAGE}")
    defs = [m for m in messages if m.name != FIELDS_MESSAGE]
    chunks = [text[leading_comment_start(text, m.start):m.end] for m in defs]
    return ProjectProto(
        message_names=[m.name for m in defs],
        messages_text="\n\n".join(chunks) + "\n",
        fields=holder.fields,
        field_lines=[" ".join(text[f.start:f.end].split()) for f in holder.fields],
    )


def _cut_block(text: str, begin: str, end: str, eat_newline_before: bool) -> str:
    b = text.find(begin)
    if b < 0:
        return text
    e = text.find(end, b)
    if e < 0:
        raise ProtoSyntaxError(f"found '{begin[:40]}...' without its end marker '{end}'")
    start = line_start(text, b)
    if eat_newline_before and start > 0:
        start -= 1
    stop = text.find("\n", e)
    stop = len(text) if stop < 0 else stop + 1
    return text[:start] + text[stop:]


def strip_injection(text: str) -> str:
    """The proto text without anything this module added."""
    text = _cut_block(text, MESSAGES_BEGIN, MESSAGES_END, eat_newline_before=True)
    return _cut_block(text, FIELDS_BEGIN, FIELDS_END, eat_newline_before=False)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def syntax_problem(text: str) -> Optional[str]:
    """Why `text` cannot take our blocks because of its syntax, if it cannot: they are proto2
    (`optional` fields, `[default = ...]`), which protoc refuses under proto3 ("Explicit
    default values are not allowed in proto3") and under editions. Every Caffe is proto2."""
    keyword, value, line = declared_syntax(text)
    if (keyword, value) == ("syntax", "proto2"):
        return None
    return (f'it declares {keyword} = "{value}" (line {line}), but the attention-to-scale '
            f'fields and messages are proto2 (optional fields with [default = ...], which protoc '
            f'refuses under {value if keyword == "syntax" else "editions"}); only a proto2 '
            f'caffe.proto (syntax = "proto2" or no syntax statement) can take them')


def find_conflicts(base: str, project: ProjectProto) -> List[str]:
    """Every way in which `base` (a proto without our blocks) clashes with what we add."""
    problem = syntax_problem(base)
    if problem:
        return [problem]
    problems = []
    messages = parse_messages(base)
    for keyword, name, start in top_level_names(base):
        if name in project.message_names:
            problems.append(f"{keyword} {name} is already defined (line {_line_of(base, start)})"
                            " and was not added by this tool")
    layer = find_message(messages, "LayerParameter")
    if layer is None:
        problems.append("no top-level message LayerParameter")
        return problems
    for name in layer.nested_names:
        if name in project.message_names:
            problems.append(f"LayerParameter defines its own {name} inside it, which the "
                            f"attention-to-scale field's type {name} would resolve to")
    for ours in project.fields:
        for f in layer.fields:
            where = f"line {_line_of(base, f.start)}"
            if f.number == ours.number:
                problems.append(f"LayerParameter field number {ours.number} (wanted for "
                                f"{ours.name}) is already used by '{f.name}' ({where})")
            elif f.name == ours.name:
                problems.append(f"LayerParameter already has a field named '{f.name}' "
                                f"with number {f.number} ({where})")
        if ours.name in layer.reserved_names:
            problems.append(f"LayerParameter reserves the name '{ours.name}' (reserved \"...\";),"
                            " which the attention-to-scale field needs")
        for low, high in layer.blocked_ranges:
            if low <= ours.number <= high:
                problems.append(f"LayerParameter reserves numbers {low}-{high}, which include "
                                f"{ours.number} (wanted for {ours.name})")
    return problems


def inject(text: str, project: ProjectProto, name: str = "caffe.proto") -> str:
    """`text` with our messages and fields, replacing an earlier injection if there is one
    (`name`: the file, for the messages)."""
    base = strip_injection(text)
    problems = find_conflicts(base, project)
    if problems:
        raise ProtoConflict(f"{name} clashes with the attention-to-scale parameters:\n  - "
                            + "\n  - ".join(problems))
    layer = find_message(parse_messages(base), "LayerParameter")
    brace_line = line_start(base, layer.close_brace)
    if base[brace_line:layer.close_brace].strip():
        raise ProtoSyntaxError(f"LayerParameter's closing '}}' (line "
                               f"{_line_of(base, layer.close_brace)}) must stand on a line of "
                               "its own: move what precedes it to the line above")
    field_block = "".join(f"  {line}\n" for line in
                          [FIELDS_BEGIN] + project.field_lines + [FIELDS_END])
    text = base[:brace_line] + field_block + base[brace_line:]
    return (text + "\n" + MESSAGES_BEGIN + "\n" + project.messages_text + MESSAGES_END + "\n")


def injection_state(text: str, project: ProjectProto) -> str:
    """'absent', 'current' or 'outdated' (our blocks are there but differ from the project's)."""
    if FIELDS_BEGIN not in text and MESSAGES_BEGIN not in text:
        return "absent"
    try:
        return "current" if inject(text, project) == text else "outdated"
    except (ProtoConflict, ProtoSyntaxError):
        return "outdated"
