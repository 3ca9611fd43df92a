"""Text assembly (.s) -> isa.Program: the `imcc asm` path, and how tests write programs by hand.

The generic line grammar in asm.lark splits the text into labels, instructions and directives;
every operand check comes from the instruction table (spec.py, through encoding.make) and from
the ranges of the target that `.target` names. Directives describe the rest of a Program, so
`assemble(disassemble(p))` rebuilds `p` exactly. Every error is an AsmError at file:line:col.

Directives (arguments separated by blanks):
    .target NAME | .target {json}         the Target (a name needs `target_loader`); once
    .core N                               the code of core N follows (each core at most once)
    .node "name" | .node - | .node ""     debug node of the following instructions; - clears
    .input {json} / .output {json}        one TensorInfo each, as TensorInfo.to_dict(), in order
    .image INDEX ROWS COLS "BASE64"       crossbar image INDEX: little-endian uint16 levels,
                                          row-major, base64 (RFC 4648 with padding)
    .bind cCORE aARRAY IMAGE              array ARRAY of core CORE holds image IMAGE at start
    .cam INDEX ROWS COLS WIDTH TREES "LOW" "HIGH" "LEAVES"
                                          CAM image INDEX: uint16 low and high bounds (rows x
                                          cols) and the float64 leaf RAM (rows x WIDTH), each
                                          little-endian, row-major, base64; TREES matches a
                                          search gives (for costs)
    .cambind cCORE mARRAY IMAGE           CAM array ARRAY of core CORE holds CAM image IMAGE
    .camcode INDEX "BASE64"               coding table INDEX: isa/acam.py CamCode.to_bytes
    .const ADDR v1 v2 ...                 float64 values at global address ADDR (repr() form;
                                          a NaN other than the default one is nan(0xBITS))
    .meta KEY "value"                     one entry of Program.meta
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from imcc.isa import spec
from imcc.isa.acam import CamCode, CamImage
from imcc.isa.container import JsonFault, tensor_from_dict
from imcc.isa.diagnostics import AsmError, Diagnostic, EncodingError, SourceLoc, TargetError
from imcc.isa.encoding import Instr, make, operand_bounds
from imcc.isa.program import Binding, Program, TensorInfo, XbarImage
from imcc.isa.target import Target

TargetLoader = Callable[[str], Target]

__all__ = [
    "TargetLoader",
    "assemble",
    "assemble_file",
    "decode_source",
    "format_float",
    "is_bare_word",
]

# Token kinds of the grammar (terminal names in asm.lark), plus JSON for `{...}` and `[...]`.
_WORDS = ("NAME", "DOTTED")
_JSON = "JSON"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
_DOTTED_RE = re.compile(_NAME_RE.pattern + r"(?:\.[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)+")
_FLOAT_WORD_RE = re.compile(r"inf|nan")
_INT_RE = re.compile(r"([-+]?)(?:0[xX]([0-9a-fA-F]+)|([0-9]+))")
_NAN_BITS_RE = re.compile(r"nan\(0[xX]([0-9a-fA-F]+)\)")
# `r5`, `a3`, `c2`: the prefixes come from the table's operand kinds.
_PREFIXED = {
    kind: re.compile(re.escape(kind.prefix) + "([0-9]{1,9})")
    for kind in spec.OperandKind
    if kind.prefix
}

# The NaN that float("nan") and np.nan produce; any other NaN is written with its bits.
DEFAULT_NAN_BITS = 0x7FF8000000000000
_EXPONENT_BITS = 0x7FF0000000000000
_MANTISSA_BITS = 0x000FFFFFFFFFFFFF

# Largest values the container can hold (u64 addresses, u32 image sides bounded by the loader).
_MAX_ADDR = (1 << 64) - 1
_MAX_IMAGE_SIDE = 1 << 16

# What a mistaken operand should have been, in words; other kinds use OperandKind.value.
_NOUNS = {
    spec.OperandKind.IMAGE: "an image index",
    spec.OperandKind.COUNT: "a count",
    spec.OperandKind.BITS: "a bit width",
    spec.OperandKind.IMM: "an immediate",
    spec.OperandKind.CAM_IMAGE: "a CAM image index",
    spec.OperandKind.CAM_CODE: "a coding table index",
}

# How many of each prefixed operand the target has: `r20` is out of range on a 16-register core.
_TARGET_LIMITS: dict[spec.OperandKind, Callable[[Target], int]] = {
    spec.OperandKind.REG: lambda target: target.core.registers,
    spec.OperandKind.ARRAY: lambda target: target.core.arrays,
    spec.OperandKind.CORE: lambda target: target.chip.cores,
    spec.OperandKind.CAM: lambda target: target.acam.arrays if target.acam else 0,
}
# Operands that index a table of the program, checked once the whole text is read.
_TABLES = {
    spec.OperandKind.IMAGE: "image",
    spec.OperandKind.CAM_IMAGE: "CAM image",
    spec.OperandKind.CAM_CODE: "coding table",
}

# Friendly names of the grammar's terminals, for syntax errors.
_TERMINAL_NAMES = {
    "_NL": "end of line",
    "$END": "end of input",
    "NAME": "a name",
    "DOTTED": "a mnemonic",
    "DIRECTIVE": "a directive",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "DASH": "'-'",
    "COMMA": "','",
    "COLON": "':'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
}
_VALUE_STARTS = frozenset({"NAME", "DOTTED", "INT", "FLOAT", "STRING", "DASH", "LBRACE", "LSQB"})


@cache
def _parser() -> Lark:
    grammar = resources.files("imcc.isa").joinpath("asm.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", maybe_placeholders=False)


def is_bare_word(text: str) -> bool:
    """Whether `text` reads back as itself without quotes (a name, not a number)."""
    return bool(
        (_NAME_RE.fullmatch(text) or _DOTTED_RE.fullmatch(text))
        and not _FLOAT_WORD_RE.fullmatch(text)
    )


def format_float(bits: int) -> str:
    """The `.const` text of one float64 given as its 64 bits; exact for every bit pattern."""
    if bits & _EXPONENT_BITS == _EXPONENT_BITS and bits & _MANTISSA_BITS:
        # repr() spells every NaN `nan`: keep the sign and payload of the unusual ones.
        return "nan" if bits == DEFAULT_NAN_BITS else f"nan(0x{bits:016x})"
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return repr(value)


def _parse_int(text: str) -> int | None:
    match = _INT_RE.fullmatch(text)
    if match is None:
        return None
    sign, hex_digits, digits = match.groups()
    try:
        value = int(hex_digits, 16) if hex_digits is not None else int(digits)
    except ValueError:  # more digits than Python converts; far outside every field anyway
        value = 1 << 16384
    return -value if sign == "-" else value


@dataclass(frozen=True, slots=True)
class _Arg:
    """One token of a statement: its terminal kind (or JSON), exact text and position."""

    kind: str
    text: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class _Statement:
    """A label, an instruction or a directive; `head` is the name, mnemonic or directive."""

    kind: str
    head: _Arg
    args: tuple[_Arg, ...] = ()


@dataclass(slots=True)
class _Pending:
    """An instruction whose labels, branch ranges and image indices are checked at the end."""

    core: int
    head: _Arg
    row: spec.InstrSpec
    values: list[int]
    labels: list[tuple[int, _Arg]]  # operand index, label name
    pcs: list[tuple[int, _Arg]]  # operand index of a TARGET given as an integer
    images: list[tuple[int, _Arg]]  # operand index of an IMAGE, CAM_IMAGE or CAM_CODE


def assemble(
    text: str, filename: str = "<asm>", target_loader: TargetLoader | None = None
) -> Program:
    """Build the Program a text describes; raise AsmError (file:line:col, caret) on any fault.

    `target_loader` resolves `.target NAME` (the CLI passes the compiler's preset loader);
    without it only `.target {json}` works.
    """
    return _Assembler(text, filename, target_loader).run()


def assemble_file(
    path: str | os.PathLike[str], target_loader: TargetLoader | None = None
) -> Program:
    """Read an assembly file (UTF-8) and assemble it; the `imcc asm` path.

    A byte that is not UTF-8 is an AsmError at its file:line:col. A file that cannot be read is
    an AsmError without a location: the caller knows which option or argument named it.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise AsmError(f"cannot read {name!r}: {exc.strerror or exc}") from None
    return assemble(decode_source(data, name), name, target_loader)


def decode_source(data: bytes, filename: str = "<asm>") -> str:
    """Assembly bytes as text; the first byte that is not UTF-8 is an AsmError there."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line_end = data.find(b"\n", start)
        source = data[line_start : line_end if line_end >= 0 else len(data)]
        before = data[line_start:start].decode("utf-8", "replace")
        loc = SourceLoc(
            filename,
            data.count(b"\n", 0, start) + 1,
            len(before) + 1,
            source.decode("utf-8", "replace").rstrip("\r"),
        )
        raise AsmError(
            f"byte 0x{data[start]:02x} is not UTF-8 text (assembly files are UTF-8)", loc
        ) from None


class _Assembler:
    """One assembly run: the statements in source order, then label and range fix-ups."""

    def __init__(self, text: str, filename: str, target_loader: TargetLoader | None) -> None:
        self.text = text
        self.filename = filename
        self.target_loader = target_loader
        self.lines = [line.rstrip("\r") for line in text.split("\n")]
        self.target: Target | None = None
        self.core: int | None = None
        self.core_lines: dict[int, int] = {}
        self.code: dict[int, list[_Pending]] = {}
        self.labels: dict[int, dict[str, tuple[int, int]]] = {}  # core -> name -> (pc, line)
        self.node: str | None = None
        self.debug: dict[tuple[int, int], str] = {}
        self.images: list[XbarImage] = []
        self.bindings: list[tuple[Binding, _Arg]] = []
        self.bound: dict[tuple[int, int], int] = {}  # (core, array) -> line
        self.constants: list[tuple[int, np.ndarray]] = []
        self.adc_ranges: dict[int, np.ndarray] = {}
        self.cam_images: list[CamImage] = []
        self.cam_bindings: list[tuple[Binding, _Arg]] = []
        self.cam_bound: dict[tuple[int, int], int] = {}  # (core, CAM array) -> line
        self.cam_codes: list[CamCode] = []
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.meta: dict[str, str] = {}
        self.meta_lines: dict[str, int] = {}

    # -- locations and errors

    def loc(self, line: int, col: int) -> SourceLoc:
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return SourceLoc(self.filename, line, col, source)

    def error(self, message: str, at: _Arg) -> AsmError:
        return AsmError(message, self.loc(at.line, at.col))

    # -- driver

    def run(self) -> Program:
        statements = self.parse()
        self.target = self.find_target(statements)
        handlers: dict[str, Callable[[_Statement], None]] = {
            ".target": lambda statement: None,  # resolved before everything else
            ".core": self.directive_core,
            ".node": self.directive_node,
            ".input": self.directive_input,
            ".output": self.directive_output,
            ".image": self.directive_image,
            ".bind": self.directive_bind,
            ".const": self.directive_const,
            ".adc": self.directive_adc,
            ".cam": self.directive_cam,
            ".cambind": self.directive_cambind,
            ".camcode": self.directive_camcode,
            ".meta": self.directive_meta,
        }
        for statement in statements:
            if statement.kind == "label":
                self.label(statement)
            elif statement.kind == "instruction":
                self.instruction(statement)
            else:
                handler = handlers.get(statement.head.text)
                if handler is None:
                    raise self.error(
                        f"unknown directive {_shown(statement.head.text)}"
                        + _suggest(statement.head.text, handlers),
                        statement.head,
                    )
                handler(statement)
        return self.finish()

    def parse(self) -> list[_Statement]:
        # The grammar wants every line ended; a final newline does not move any position.
        source = self.text if self.text.endswith("\n") else self.text + "\n"
        try:
            tree = _parser().parse(source)
        except UnexpectedInput as exc:
            raise self.syntax_error(exc) from None
        except LarkError as exc:  # pragma: no cover - lark raises UnexpectedInput for input
            raise AsmError(f"cannot parse: {exc}", self.loc(1, 1)) from None
        statements = []
        for node in tree.children:
            assert isinstance(node, Tree)
            tokens = node.children
            head = tokens[0]
            assert isinstance(head, Token)
            rest = tokens[1:]
            if node.data == "instruction" and rest:
                operands = rest[0]
                assert isinstance(operands, Tree)
                rest = operands.children
            statements.append(
                _Statement(
                    str(node.data), self.arg(head, source), tuple(self.arg(t, source) for t in rest)
                )
            )
        return statements

    def arg(self, node: Token | Tree[Token], source: str) -> _Arg:
        if isinstance(node, Token):
            return _Arg(str(node.type), str(node), node.line or 1, node.column or 1)
        # A JSON object or array: its exact text, from its opening to its closing bracket.
        first, last = node.children[0], node.children[-1]
        assert isinstance(first, Token) and isinstance(last, Token)
        text = source[first.start_pos or 0 : last.end_pos]
        return _Arg(_JSON, text, first.line or 1, first.column or 1)

    def syntax_error(self, exc: UnexpectedInput) -> AsmError:
        line, col = max(exc.line, 1), max(exc.column, 1)
        if isinstance(exc, UnexpectedCharacters):
            char = exc.char
            message = "unterminated string" if char == '"' else f"unexpected character {char!r}"
        elif isinstance(exc, UnexpectedToken):
            token = exc.token
            found = _TERMINAL_NAMES.get(token.type, "") if token.type in ("_NL", "$END") else ""
            message = f"unexpected {found or _shown(str(token))}"
            expected = _describe_expected(exc.expected)
            if expected:
                message += f"; expected {expected}"
            if token.type == "$END":
                line, col = len(self.lines), len(self.lines[-1]) + 1
        else:  # pragma: no cover - the LALR parser raises only the two above
            message = "syntax error"
        return AsmError(message, self.loc(line, col))

    # -- the target, resolved first: operand ranges depend on it

    def find_target(self, statements: list[_Statement]) -> Target:
        found = [s for s in statements if s.kind == "directive" and s.head.text == ".target"]
        if not found:
            raise AsmError(
                "missing `.target` directive: name the target (`.target NAME`) or give its JSON "
                "(`.target {...}`)",
                self.loc(1, 1),
            )
        if len(found) > 1:
            raise self.error(
                f"duplicate `.target` (the target is already given at line {found[0].head.line})",
                found[1].head,
            )
        statement = found[0]
        if len(statement.args) != 1:
            raise self.error(
                "`.target` takes one argument: a target name or the target's JSON "
                f"(`.target {{...}}`), not {len(statement.args)}",
                statement.head,
            )
        arg = statement.args[0]
        if arg.kind == _JSON:
            data = self.json(arg)  # the one JSON reader: duplicates, depth, digits are errors
            try:
                return Target.from_dict(data, "target")
            except TargetError as exc:
                raise self.error(exc.message, arg) from None
            except RecursionError:
                raise self.error("malformed JSON (nested too deeply)", arg) from None
        if arg.kind not in (*_WORDS, "STRING"):
            raise self.error(
                f"`.target` expects a target name or JSON, not {_shown(arg.text)}", arg
            )
        name = self.string(arg) if arg.kind == "STRING" else arg.text
        if self.target_loader is None:
            raise self.error(
                f"cannot resolve target {_shown(name)} here: no target loader was given "
                "(assemble through the imcc CLI, or give the target's JSON: `.target {...}`)",
                arg,
            )
        try:
            target = self.target_loader(name)
        except Diagnostic as exc:
            raise self.error(exc.message, arg) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self.error(f"cannot load target {_shown(name)}: {exc}", arg) from None
        if not isinstance(target, Target):
            raise self.error(f"the target loader gave no Target for {_shown(name)}", arg)
        return target

    @property
    def chip(self) -> Target:
        assert self.target is not None
        return self.target

    # -- labels and instructions

    def label(self, statement: _Statement) -> None:
        head = statement.head
        name = head.text
        if self.core is None:
            raise self.error(
                f"label {_shown(name)} before the first `.core`: labels belong to a core's code",
                head,
            )
        kind = _prefixed_kind(name)
        if kind is not None:
            raise self.error(
                f"label {_shown(name)} would read as {_article(kind.value)}; choose another name",
                head,
            )
        labels = self.labels[self.core]
        if name in labels:
            raise self.error(
                f"duplicate label {_shown(name)} (first defined at line {labels[name][1]})", head
            )
        labels[name] = (len(self.code[self.core]), head.line)

    def instruction(self, statement: _Statement) -> None:
        head = statement.head
        mnemonic = head.text
        if self.core is None:
            raise self.error(
                f"instruction {_shown(mnemonic)} before the first `.core` directive", head
            )
        row = spec.BY_MNEMONIC.get(mnemonic)
        if row is None:
            raise self.error(
                f"unknown instruction {_shown(mnemonic)}" + _suggest(mnemonic, spec.BY_MNEMONIC),
                head,
            )
        args = statement.args
        if len(args) != len(row.fields):
            count = len(row.fields)
            takes = "no operands" if count == 0 else f"{count} operand{'s' * (count != 1)}"
            at = args[count] if len(args) > count else head
            raise self.error(f"{mnemonic!r} takes {takes} ({row.syntax}), not {len(args)}", at)
        pending = _Pending(self.core, head, row, [], [], [], [])
        for index, (field, arg) in enumerate(zip(row.fields, args, strict=True)):
            pending.values.append(self.operand(pending, index, field, arg))
        code = self.code[self.core]
        if self.node is not None:
            self.debug[(self.core, len(code))] = self.node
        code.append(pending)

    def operand(self, pending: _Pending, index: int, field: spec.Field, arg: _Arg) -> int:
        kind = field.kind
        if kind is spec.OperandKind.TARGET:
            value = _parse_int(arg.text) if arg.kind == "INT" else None
            if value is not None:
                if not field.min <= value <= field.max:
                    raise self.operand_error(pending.row, index, field, arg)
                pending.pcs.append((index, arg))
                return value
            # `nan` and `inf` lex as numbers but are fine label names.
            if (
                arg.kind in (*_WORDS, "FLOAT")
                and _NAME_RE.fullmatch(arg.text)
                and _prefixed_kind(arg.text) is None
            ):
                pending.labels.append((index, arg))
                return 0
            raise self.operand_error(pending.row, index, field, arg)
        if kind.prefix:
            value = _prefixed_index(kind, arg.text) if arg.kind == "NAME" else None
            if value is None or not 0 <= value < self.prefixed_limit(field):
                raise self.operand_error(pending.row, index, field, arg)
            return value
        value = _parse_int(arg.text) if arg.kind == "INT" else None
        lo, hi = operand_bounds(field)
        if value is None or not lo <= value <= hi:
            raise self.operand_error(pending.row, index, field, arg)
        if kind in _TABLES:
            pending.images.append((index, arg))
        return value

    def prefixed_limit(self, field: spec.Field) -> int:
        """How many registers, arrays or cores exist: the field's range cut to the target's."""
        limit: int = field.max + 1
        count = _TARGET_LIMITS.get(field.kind)
        return limit if count is None else min(limit, count(self.chip))

    def operand_error(
        self, row: spec.InstrSpec, index: int, field: spec.Field, arg: _Arg
    ) -> AsmError:
        return self.error(
            f"operand {index + 1} of {row.mnemonic!r} must be {self.describe(field)}, "
            f"not {_shown(arg.text)}",
            arg,
        )

    def describe(self, field: spec.Field) -> str:
        kind = field.kind
        if kind is spec.OperandKind.TARGET:
            return f"a target (a label or a pc in [0, {field.max}])"
        noun = _NOUNS.get(kind, _article(kind.value))
        if kind.prefix:
            limit = self.prefixed_limit(field)
            if limit == 0:
                return f"{noun} (target {self.chip.name!r} has none)"
            return f"{noun} ({kind.prefix}0..{kind.prefix}{limit - 1})"
        lo, hi = operand_bounds(field)
        return f"{noun} in [{lo}, {hi}]"

    # -- directives

    def expect(self, statement: _Statement, usage: str, count: int) -> tuple[_Arg, ...]:
        args = statement.args
        if len(args) != count:
            at = args[count] if len(args) > count else statement.head
            raise self.error(
                f"`{statement.head.text}` takes {count} argument{'s' * (count != 1)} ({usage}), "
                f"not {len(args)}",
                at,
            )
        return args

    def index(self, arg: _Arg, what: str, limit: int, kind: spec.OperandKind | None = None) -> int:
        """A non-negative index below `limit`: an integer, or `r5`-style where `kind` is given."""
        value = _parse_int(arg.text) if arg.kind == "INT" else None
        if value is None and kind is not None and arg.kind == "NAME":
            value = _prefixed_index(kind, arg.text)
        if value is None or not 0 <= value < limit:
            bounds = f"0..{limit - 1}" if limit > 0 else f"none on target {self.chip.name!r}"
            raise self.error(f"expected {what} ({bounds}), not {_shown(arg.text)}", arg)
        return value

    def string(self, arg: _Arg) -> str:
        try:
            value = json.loads(arg.text)
        except json.JSONDecodeError as exc:
            raise self.error(f"malformed string {_shown(arg.text)} ({exc.msg})", arg) from None
        assert isinstance(value, str)
        try:  # a \ud800 escape gives a lone surrogate, which is not text (nor UTF-8)
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self.error(
                f"string {_shown(arg.text)} holds a lone surrogate at character {exc.start}; "
                "expected Unicode text",
                arg,
            ) from None
        return value

    def word_or_string(self, arg: _Arg, what: str) -> str:
        if arg.kind == "STRING":
            return self.string(arg)
        if arg.kind in (*_WORDS, "INT", "FLOAT"):
            return arg.text
        raise self.error(f"expected {what}, not {_shown(arg.text)}", arg)

    def directive_core(self, statement: _Statement) -> None:
        (arg,) = self.expect(statement, ".core N", 1)
        core = self.index(arg, "a core index", self.chip.chip.cores, spec.OperandKind.CORE)
        if core in self.code:
            raise self.error(
                f"core {core} already has code (its `.core` is at line {self.core_lines[core]})",
                arg,
            )
        self.core = core
        self.core_lines[core] = statement.head.line
        self.code[core] = []
        self.labels[core] = {}
        self.node = None

    def directive_node(self, statement: _Statement) -> None:
        (arg,) = self.expect(statement, '.node "name", or .node - to clear', 1)
        if self.core is None:
            raise self.error("`.node` before the first `.core`", statement.head)
        if arg.kind == "DASH":
            self.node = None
            return
        name = self.word_or_string(arg, 'a node name ("name") or -')
        self.node = name or None

    def directive_input(self, statement: _Statement) -> None:
        self.inputs.append(self.tensor(statement))

    def directive_output(self, statement: _Statement) -> None:
        self.outputs.append(self.tensor(statement))

    def tensor(self, statement: _Statement) -> TensorInfo:
        directive = statement.head.text
        (arg,) = self.expect(statement, f"{directive} {{json}}", 1)
        data = self.json(arg)
        if not isinstance(data, dict):
            raise self.error(f"`{directive}` takes a JSON object, not {_shown(arg.text)}", arg)
        known = ("name", "shape", "addr", "dtype", "batch_axis", "quant")
        unknown = [key for key in data if key not in known]
        if unknown:
            raise self.error(
                f"unknown key {_shown(unknown[0])} in `{directive}`; expected {', '.join(known)}",
                arg,
            )
        missing = [key for key in known[:3] if key not in data]
        if missing:
            raise self.error(f"`{directive}` is missing {missing[0]!r}", arg)

        def bad(key: str, expected: str) -> AsmError:
            return self.error(
                f"{key!r} of `{directive}` must be {expected}, not {_clip(json.dumps(data[key]))}",
                arg,
            )

        name, shape, addr = data["name"], data["shape"], data["addr"]
        dtype, batch_axis = data.get("dtype", "float32"), data.get("batch_axis", True)
        quant = data.get("quant", {})
        if not isinstance(name, str):
            raise bad("name", "a string")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 1 for d in shape):
            raise bad("shape", "a list of positive integers")
        if not _is_int(addr) or not 0 <= addr <= _MAX_ADDR:
            raise bad("addr", f"an integer in [0, {_MAX_ADDR}]")
        if not isinstance(dtype, str):
            raise bad("dtype", "a string")
        if not isinstance(batch_axis, bool):
            raise bad("batch_axis", "true or false")
        if not isinstance(quant, dict) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in quant.values()
        ):
            raise bad("quant", "an object of strings and numbers")
        try:  # and what the container checks: the binary must be able to hold the tensor
            tensor_from_dict({**data, "dtype": dtype, "batch_axis": batch_axis, "quant": quant})
        except JsonFault as exc:
            raise self.error(f"`{directive}` cannot be stored: {exc}", arg) from None
        return TensorInfo(
            name=name,
            shape=tuple(shape),
            addr=addr,
            dtype=dtype,
            batch_axis=batch_axis,
            quant=tuple(quant.items()),
        )

    def json(self, arg: _Arg) -> Any:
        if arg.kind != _JSON:
            raise self.error(f"expected a JSON object or list, not {_shown(arg.text)}", arg)

        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            seen = {}
            for key, value in pairs:
                if key in seen:
                    raise ValueError(f"duplicate key {_shown(key)}")
                seen[key] = value
            return seen

        try:
            return json.loads(arg.text, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as exc:
            # The JSON sits on one line, so its offset is a column offset.
            at = _Arg(arg.kind, arg.text, arg.line, arg.col + exc.pos)
            raise self.error(f"malformed JSON ({exc.msg})", at) from None
        except ValueError as exc:
            raise self.error(f"malformed JSON ({exc})", arg) from None
        except RecursionError:
            raise self.error("malformed JSON (nested too deeply)", arg) from None

    def next_index(self, arg: _Arg, expected: int, what: str, plural: str) -> None:
        """Images, CAM images and coding tables are numbered in order from 0."""
        index = _parse_int(arg.text) if arg.kind == "INT" else None
        if index != expected:
            raise self.error(
                f"expected {what} index {expected} ({plural} are numbered in order from 0), "
                f"not {_shown(arg.text)}",
                arg,
            )

    def directive_image(self, statement: _Statement) -> None:
        usage = '.image INDEX ROWS COLS "BASE64"'
        index_arg, rows_arg, cols_arg, data_arg = self.expect(statement, usage, 4)
        self.next_index(index_arg, len(self.images), "image", "images")
        rows = self.index(rows_arg, "a row count", _MAX_IMAGE_SIDE + 1)
        cols = self.index(cols_arg, "a column count", _MAX_IMAGE_SIDE + 1)
        for side, arg in ((rows, rows_arg), (cols, cols_arg)):
            if side == 0:
                raise self.error(f"an image needs at least one row and column, not {side}", arg)
        if data_arg.kind != "STRING":
            raise self.error(
                f"image levels must be a quoted base64 string, not {_shown(data_arg.text)}",
                data_arg,
            )
        try:
            raw = base64.b64decode(self.string(data_arg), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.error(f"image levels are not valid base64 ({exc})", data_arg) from None
        if len(raw) != rows * cols * 2:
            raise self.error(
                f"image levels hold {len(raw)} bytes, but {rows}x{cols} uint16 levels need "
                f"{rows * cols * 2}",
                data_arg,
            )
        levels = np.frombuffer(raw, dtype="<u2").reshape(rows, cols)
        self.images.append(XbarImage(levels))

    def directive_bind(self, statement: _Statement) -> None:
        core_arg, array_arg, image_arg = self.expect(statement, ".bind cCORE aARRAY IMAGE", 3)
        target = self.chip
        core = self.index(core_arg, "a core", target.chip.cores, spec.OperandKind.CORE)
        array = self.index(array_arg, "an array", target.core.arrays, spec.OperandKind.ARRAY)
        image = self.index(image_arg, "an image index", 1 << spec.WIDTH[spec.OperandKind.IMAGE])
        if (core, array) in self.bound:
            raise self.error(
                f"array a{array} of core c{core} is already bound "
                f"(line {self.bound[(core, array)]})",
                core_arg,
            )
        self.bound[(core, array)] = statement.head.line
        self.bindings.append((Binding(core, array, image), image_arg))

    def base64_arg(self, arg: _Arg, what: str, size: int) -> bytes:
        if arg.kind != "STRING":
            raise self.error(f"{what} must be a quoted base64 string, not {_shown(arg.text)}", arg)
        try:
            raw = base64.b64decode(self.string(arg), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.error(f"{what} are not valid base64 ({exc})", arg) from None
        if size >= 0 and len(raw) != size:
            raise self.error(f"{what} hold {len(raw)} bytes, expected {size}", arg)
        return raw

    def directive_cam(self, statement: _Statement) -> None:
        usage = '.cam INDEX ROWS COLS WIDTH TREES "LOW" "HIGH" "LEAVES"'
        index_arg, rows_arg, cols_arg, width_arg, trees_arg, *data = self.expect(
            statement, usage, 8
        )
        self.next_index(index_arg, len(self.cam_images), "CAM image", "CAM images")
        rows = self.index(rows_arg, "a row count", _MAX_IMAGE_SIDE + 1)
        cols = self.index(cols_arg, "a column count", _MAX_IMAGE_SIDE + 1)
        width = self.index(width_arg, "a leaf width", _MAX_IMAGE_SIDE + 1)
        trees = self.index(trees_arg, "a tree count", 1 << 32)
        for side, arg in ((rows, rows_arg), (cols, cols_arg)):
            if side == 0:
                raise self.error(f"a CAM image needs at least one row and cell, not {side}", arg)
        low = self.base64_arg(data[0], "low bounds", rows * cols * 2)
        high = self.base64_arg(data[1], "high bounds", rows * cols * 2)
        leaves = self.base64_arg(data[2], "leaf values", rows * width * 8)
        self.cam_images.append(
            CamImage(
                np.frombuffer(low, dtype="<u2").reshape(rows, cols),
                np.frombuffer(high, dtype="<u2").reshape(rows, cols),
                np.frombuffer(leaves, dtype="<f8").reshape(rows, width),
                trees,
            )
        )

    def directive_cambind(self, statement: _Statement) -> None:
        core_arg, array_arg, image_arg = self.expect(statement, ".cambind cCORE mARRAY IMAGE", 3)
        target = self.chip
        arrays = target.acam.arrays if target.acam else 0
        core = self.index(core_arg, "a core", target.chip.cores, spec.OperandKind.CORE)
        array = self.index(array_arg, "a CAM array", arrays, spec.OperandKind.CAM)
        image = self.index(
            image_arg, "a CAM image index", 1 << spec.WIDTH[spec.OperandKind.CAM_IMAGE]
        )
        if (core, array) in self.cam_bound:
            raise self.error(
                f"CAM array m{array} of core c{core} is already bound "
                f"(line {self.cam_bound[(core, array)]})",
                core_arg,
            )
        self.cam_bound[(core, array)] = statement.head.line
        self.cam_bindings.append((Binding(core, array, image), image_arg))

    def directive_camcode(self, statement: _Statement) -> None:
        index_arg, data_arg = self.expect(statement, '.camcode INDEX "BASE64"', 2)
        self.next_index(index_arg, len(self.cam_codes), "coding table", "tables")
        raw = self.base64_arg(data_arg, "the coding table's bytes", -1)
        try:
            self.cam_codes.append(CamCode.from_bytes(raw))
        except ValueError as exc:
            raise self.error(f"malformed coding table ({exc})", data_arg) from None

    def directive_const(self, statement: _Statement) -> None:
        if not statement.args:
            raise self.error(
                "`.const` takes an address and values (.const ADDR v1 v2 ...)", statement.head
            )
        addr_arg, *value_args = statement.args
        addr = _parse_int(addr_arg.text) if addr_arg.kind == "INT" else None
        if addr is None or not 0 <= addr <= _MAX_ADDR:
            raise self.error(
                f"expected a global address in [0, {_MAX_ADDR}], not {_shown(addr_arg.text)}",
                addr_arg,
            )
        bits = [self.float_bits(arg) for arg in value_args]
        self.constants.append((addr, np.array(bits, dtype="<u8").view("<f8")))

    def directive_adc(self, statement: _Statement) -> None:
        usage = ".adc IMAGE r1 r2 ... (one ADC full-scale range per column of the image)"
        if not statement.args:
            raise self.error(f"`.adc` takes an image and ranges ({usage})", statement.head)
        image_arg, *value_args = statement.args
        image = _parse_int(image_arg.text) if image_arg.kind == "INT" else None
        if image is None or not 0 <= image < len(self.images):
            raise self.error(
                f"expected an image defined above (0..{len(self.images) - 1}), not "
                f"{_shown(image_arg.text)}",
                image_arg,
            )
        if image in self.adc_ranges:
            raise self.error(f"image {image} already has ADC ranges", image_arg)
        cols = self.images[image].cols
        if len(value_args) != cols:
            raise self.error(
                f"image {image} has {cols} columns, so `.adc` needs {cols} ranges, "
                f"not {len(value_args)}",
                statement.head,
            )
        ranges = np.array([self.float_bits(arg) for arg in value_args], dtype="<u8").view("<f8")
        for arg, value in zip(value_args, ranges, strict=True):
            if not (math.isfinite(value) and value > 0):
                raise self.error(f"an ADC range must be finite and positive, not {arg.text}", arg)
        self.adc_ranges[image] = ranges

    def float_bits(self, arg: _Arg) -> int:
        """The 64 bits of a `.const` value; bits, not Python floats, so NaN payloads survive."""
        if arg.kind == "FLOAT":
            match = _NAN_BITS_RE.fullmatch(arg.text.lstrip("+-"))
            if match is not None:
                bits = int(match[1], 16)
                is_nan = bits & _EXPONENT_BITS == _EXPONENT_BITS and bits & _MANTISSA_BITS
                if arg.text[0] in "+-" or bits >> 64 or not is_nan:
                    raise self.error(
                        f"{_shown(arg.text)} is not a NaN: nan(0x...) takes the 64 bits of a NaN",
                        arg,
                    )
                return bits
            value = float(arg.text)
            if math.isinf(value) and "inf" not in arg.text:
                raise self.error(f"{_shown(arg.text)} is too large for a float64", arg)
        elif arg.kind == "INT":
            number = _parse_int(arg.text) or 0
            try:
                value = float(number)
            except OverflowError:
                raise self.error(f"{_shown(arg.text)} is too large for a float64", arg) from None
        else:
            raise self.error(f"expected a number, not {_shown(arg.text)}", arg)
        result: int = struct.unpack("<Q", struct.pack("<d", value))[0]
        return result

    def directive_meta(self, statement: _Statement) -> None:
        key_arg, value_arg = self.expect(statement, '.meta KEY "value"', 2)
        key = self.word_or_string(key_arg, "a key")
        if key in self.meta:
            raise self.error(
                f"duplicate `.meta` key {_shown(key)} (first given at line {self.meta_lines[key]})",
                key_arg,
            )
        self.meta[key] = self.word_or_string(value_arg, 'a "value"')
        self.meta_lines[key] = statement.head.line

    # -- fix-ups once every label, core and image is known

    def finish(self) -> Program:
        code: list[list[Instr]] = [[] for _ in range(max(self.code, default=-1) + 1)]
        for core, pendings in self.code.items():
            end = len(pendings)
            for pending in pendings:
                code[core].append(self.resolve(pending, end))
        for binding, arg in self.bindings:
            if binding.image >= len(self.images):
                raise self.error(self.missing_image(binding.image), arg)
        for binding, arg in self.cam_bindings:
            if binding.image >= len(self.cam_images):
                raise self.error(self.missing(spec.OperandKind.CAM_IMAGE, binding.image), arg)
        return Program(
            target=self.chip,
            code=code,
            images=self.images,
            bindings=[binding for binding, _ in self.bindings],
            constants=self.constants,
            inputs=self.inputs,
            outputs=self.outputs,
            debug=self.debug,
            meta=self.meta,
            adc_ranges=self.adc_ranges,
            cam_images=self.cam_images,
            cam_bindings=[binding for binding, _ in self.cam_bindings],
            cam_codes=self.cam_codes,
        )

    def resolve(self, pending: _Pending, end: int) -> Instr:
        row, values = pending.row, pending.values
        labels = self.labels[pending.core]
        for index, arg in pending.labels:
            if arg.text not in labels:
                raise self.error(
                    f"undefined label {_shown(arg.text)} in the code of core {pending.core}"
                    + _suggest(arg.text, labels),
                    arg,
                )
            values[index] = labels[arg.text][0]
        for index, arg in pending.pcs:
            if values[index] > end:
                raise self.error(
                    f"operand {index + 1} of {row.mnemonic!r} jumps to pc {values[index]}, past "
                    f"the end of core {pending.core}'s code (pc 0..{end})",
                    arg,
                )
        for index, arg in pending.images:
            kind = row.fields[index].kind
            if values[index] >= self.table_size(kind):
                raise self.error(self.missing(kind, values[index]), arg)
        head = pending.head
        try:
            return make(row.mnemonic, *values, loc=self.loc(head.line, head.col))
        except EncodingError as exc:  # the checks above should have caught it first
            raise AsmError(exc.message, exc.loc) from None

    def missing_image(self, image: int) -> str:
        return self.missing(spec.OperandKind.IMAGE, image)

    def table_size(self, kind: spec.OperandKind) -> int:
        return {
            spec.OperandKind.IMAGE: len(self.images),
            spec.OperandKind.CAM_IMAGE: len(self.cam_images),
            spec.OperandKind.CAM_CODE: len(self.cam_codes),
        }[kind]

    def missing(self, kind: spec.OperandKind, index: int) -> str:
        count, noun = self.table_size(kind), _TABLES[kind]
        have = {0: f"no {noun}s", 1: f"only {noun} 0"}.get(count, f"{noun}s 0..{count - 1}")
        return f"{noun} {index} is not defined (the program has {have})"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _article(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _prefixed_kind(text: str) -> spec.OperandKind | None:
    """The operand kind whose prefix-and-digits form `text` has (`r5`, `a3`), if any."""
    for kind, pattern in _PREFIXED.items():
        if pattern.fullmatch(text):
            return kind
    return None


def _prefixed_index(kind: spec.OperandKind, text: str) -> int | None:
    """5 for `r5` when `kind` is a register, else None."""
    pattern = _PREFIXED.get(kind)
    match = pattern.fullmatch(text) if pattern else None
    return int(match[1]) if match else None


def _clip(text: str) -> str:
    """Source text for a message, shortened if it is long (a whole base64 image, say)."""
    return text if len(text) <= 40 else text[:37] + "..."


def _shown(text: str) -> str:
    return repr(_clip(text))


def _suggest(word: str, choices: Any) -> str:
    """ "; did you mean ...?" for near misses, including a mnemonic typed without its unit."""
    names = [str(choice) for choice in choices]
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if not close:
        close = [name for name in names if name.split(".", 1)[-1] == word][:3]
    if not close:
        return ""
    return f"; did you mean {_either([repr(name) for name in close])}?"


def _either(words: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _describe_expected(expected: set[str]) -> str:
    names = set(expected)
    words = []
    if names >= _VALUE_STARTS:
        words.append("a value")
        names -= _VALUE_STARTS
    words += sorted(_TERMINAL_NAMES.get(name, name) for name in names)
    return _either(words) if words else ""
