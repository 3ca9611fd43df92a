"""User-facing errors: every one is a Diagnostic with a location.

The location says where the problem is in terms the user can act on: file:line:col for
assembly, the model node for frontends and the compiler, the section for binaries, and the core
and pc for simulator traps. The CLI prints `str(diagnostic)` and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceLoc:
    """A position in a text file; `line` and `col` count from 1."""

    file: str
    line: int
    col: int
    source_line: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def caret(self) -> str:
        """The offending line with a caret under the column, for the message body."""
        if not self.source_line:
            return ""
        pad = "".join("\t" if ch == "\t" else " " for ch in self.source_line[: self.col - 1])
        return f"\n    {self.source_line}\n    {pad}^"


@dataclass(frozen=True, slots=True)
class NodeLoc:
    """A node of a model graph (ONNX node name or op, or an IR op)."""

    node: str
    op_type: str = ""

    def __str__(self) -> str:
        return f"node {self.node!r}" + (f" ({self.op_type})" if self.op_type else "")


@dataclass(frozen=True, slots=True)
class SectionLoc:
    """A section of a binary container, optionally a byte offset inside it."""

    file: str
    section: str
    offset: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}: section {self.section}"
        return where if self.offset is None else f"{where} at byte {self.offset}"


@dataclass(frozen=True, slots=True)
class CoreLoc:
    """An instruction of one core's program, with the model node it came from if known."""

    core: int
    pc: int
    mnemonic: str = ""
    node: str = ""

    def __str__(self) -> str:
        text = f"core {self.core} pc {self.pc}"
        if self.mnemonic:
            text += f" ({self.mnemonic})"
        if self.node:
            text += f" [node {self.node!r}]"
        return text


@dataclass(frozen=True, slots=True)
class InputLoc:
    """A run-time input tensor, optionally one sample (batch index) of it."""

    name: str
    index: int | None = None

    def __str__(self) -> str:
        where = f"input {self.name!r}"
        return where if self.index is None else f"{where} sample {self.index}"


@dataclass(frozen=True, slots=True)
class OptionLoc:
    """A command-line option or API argument, with the value given."""

    option: str

    def __str__(self) -> str:
        return self.option


Loc = SourceLoc | NodeLoc | SectionLoc | CoreLoc | InputLoc | OptionLoc | None


class Diagnostic(Exception):
    """Base of every error a user can cause; `loc` says where."""

    def __init__(self, message: str, loc: Loc = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def __str__(self) -> str:
        if self.loc is None:
            return self.message
        caret = self.loc.caret() if isinstance(self.loc, SourceLoc) else ""
        return f"{self.loc}: {self.message}{caret}"


class AsmError(Diagnostic):
    """Assembly text that does not parse or whose operands do not fit the instruction."""


class EncodingError(Diagnostic):
    """An instruction or word that the instruction table cannot represent."""


class BinaryFormatError(Diagnostic):
    """A binary container that is truncated, corrupted or inconsistent."""


class TargetError(Diagnostic):
    """A target description that is missing, malformed or inconsistent."""


class FrontendError(Diagnostic):
    """A model the frontends cannot import: unsupported op, malformed graph, bad shapes."""


class CompileError(Diagnostic):
    """A model the compiler cannot map onto the target."""


class SimulationError(Diagnostic):
    """A trap while simulating: bad address, deadlock, cycle budget exhausted, bad input."""
