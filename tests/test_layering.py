"""The architecture's rules, checked on the source: who imports whom, and where the
instruction table lives (DESIGN sections 1 and 4)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imcc.isa import spec

ROOT = Path(__file__).resolve().parents[1]
# The folders pyproject.toml maps into the `imcc` namespace, and the package each becomes.
PACKAGES = {"isa": "imcc.isa", "compiler": "imcc.compiler", "runtime": "imcc.runtime",
            "frontends": "imcc.frontends", "imcc": "imcc", "tools": "imcc.tools"}  # fmt: skip
# What each package may import from us (DESIGN section 1); none may import imcc.tools.
ALLOWED = {
    "isa": {"imcc.isa"},
    "compiler": {"imcc.isa", "imcc.compiler"},
    "runtime": {"imcc.isa", "imcc.runtime"},
    "frontends": {"imcc.isa", "imcc.compiler.ir", "imcc.frontends"},
}
# The only module outside imcc.tools that may import it: the CLI runs the bench, demo and plots.
TOOLS_USERS = {"imcc.cli"}


def module_name(path: Path) -> str:
    """The dotted name a file is installed as: compiler/ir/core.py -> imcc.compiler.ir.core."""
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> dict[str, Path]:
    """Every module of the installed packages, by dotted name."""
    return {
        module_name(path): path
        for folder in PACKAGES
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


MODULES = project_files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, at_run_time: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, at any depth (module level and inside functions);
    with `at_run_time`, not those under `if TYPE_CHECKING:` (they never run)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    if at_run_time and isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _import_nodes(child, at_run_time)


def imports_of(path: Path, at_run_time: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a project file. Relative imports are
    resolved against the file's own package; `from X import a` names X.a when that is one of
    our modules (a submodule), else X."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _import_nodes(ast.parse(path.read_text(), str(path)), at_run_time):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            assert node.level <= len(parts), f"{path}:{node.lineno} imports beyond the top"
            anchor = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.append((node.lineno, sub if sub in MODULES else base))
    return sorted(set(found))


def test_relative_imports_are_resolved() -> None:
    importer = ROOT / "frontends" / "onnx" / "importer.py"
    assert module_name(importer) == "imcc.frontends.onnx.importer"
    assert module_name(ROOT / "tools" / "__init__.py") == "imcc.tools"
    assert "imcc.frontends.onnx.converters" in {m for _, m in imports_of(importer)}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_packages_import_only_what_the_layering_allows(folder: str) -> None:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imports_of(path):
            ours = module == "imcc" or module.startswith("imcc.")
            if ours and not any(module == a or module.startswith(a + ".") for a in ALLOWED[folder]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_only_the_cli_imports_the_tools() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for name, path in MODULES.items()
        if not (name == "imcc.tools" or name.startswith("imcc.tools.") or name in TOOLS_USERS)
        for line, module in imports_of(path)
        if module == "imcc.tools" or module.startswith("imcc.tools.")
    ]
    assert not bad, "\n".join(bad)


def test_loading_the_runtime_loads_no_compiler_or_frontend() -> None:
    code = (
        "import sys, imcc.runtime.simulator, imcc.runtime.loader; "
        "bad = [m for m in sys.modules if m.startswith(('imcc.compiler', 'imcc.frontends'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_mnemonic_is_spelled_outside_the_instruction_table() -> None:
    mnemonics = set(spec.BY_MNEMONIC)
    bad = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "isa" / "spec.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    words = set(node.value.replace(",", " ").split())
                    if words & mnemonics:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not bad, "\n".join(bad)


# A dotted lower-case word, as a mnemonic is spelled: "simd.add.s" in "`simd.add.s`," too.
DOTTED = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants of a module and of its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _names_opcode(node: ast.AST) -> bool:
    """An expression that says it is an opcode: `opcode`, `row.opcode`, `spec.BY_OPCODE`."""
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return "opcode" in name.lower()


def _ints(node: ast.AST | None) -> list[ast.Constant]:
    """The int literals `node` is or holds (a tuple, list or set of them), bools aside."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [c for element in node.elts for c in _ints(element)]
    ok = isinstance(node, ast.Constant) and type(node.value) is int
    return [node] if ok else []  # type: ignore[list-item]


def opcode_literals(tree: ast.Module, source: str) -> Iterator[ast.Constant]:
    """Int literals standing for an opcode: written in hex with an opcode's value; compared
    with, assigned to, passed as or looked up by something named opcode; or shifted into the
    opcode bits (`0x41 << 56`; a 1 shifted there is a mask's bound and allowed)."""
    opcodes = set(spec.BY_OPCODE)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value in opcodes:
            text = ast.get_source_segment(source, node) or ""
            if text.lower().startswith("0x"):
                yield node
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_opcode(o) for o in operands):
                yield from (c for o in operands for c in _ints(o))
        elif isinstance(node, ast.keyword) and node.arg and "opcode" in node.arg.lower():
            yield from _ints(node.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_names_opcode(t) for t in targets):
                yield from _ints(node.value)
        elif isinstance(node, ast.Subscript) and _names_opcode(node.value):
            yield from _ints(node.slice)
        elif isinstance(node, ast.Call) and _names_opcode(node.func):
            yield from (c for a in node.args for c in _ints(a))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.LShift):
            shift = node.right
            if (
                _names_opcode(shift)
                or "OPCODE" in getattr(shift, "attr", "")
                or (isinstance(shift, ast.Constant) and shift.value == spec.OPCODE_LSB)
            ):
                # 1 << OPCODE_LSB is the lowest opcode bit, for a mask of the operand fields
                yield from (c for c in _ints(node.left) if c.value != 1)


def spelled_instructions(source: str) -> list[str]:
    """Where a module's code spells an instruction, as "line: what" (the rule is in the
    docstring of the test below)."""
    mnemonics = set(spec.BY_MNEMONIC)
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            spelled = set(DOTTED.findall(node.value)) & mnemonics
            if spelled and id(node) not in docstrings:
                found.append(f"{node.lineno}: mnemonic {', '.join(sorted(spelled))}")
    found += [f"{node.lineno}: opcode {node.value:#04x}" for node in opcode_literals(tree, source)]
    return sorted(set(found), key=lambda entry: (int(entry.split(":")[0]), entry))


def test_the_instruction_check_sees_each_spelling() -> None:
    source = """def f(row, word):
        \"\"\"A docstring may name xbar.mvm.\"\"\"
        x = "first `simd.add`, then"
        y = f"simd.add.s {word}"
        if row.opcode == 65 or row.opcode in (0x40, 0x41):
            return spec.BY_OPCODE[65], Instr(opcode=65), 0x20
        return (0x20 << 56), (1 << spec.OPCODE_LSB) - 1, 0xCA, 65
    """
    assert spelled_instructions(source) == [
        "3: mnemonic simd.add",
        "4: mnemonic simd.add.s",
        "5: opcode 0x40",
        "5: opcode 0x41",
        "6: opcode 0x20",
        "6: opcode 0x41",
        "7: opcode 0x20",
    ]


def test_no_mnemonic_or_opcode_literal_in_code_outside_the_instruction_table() -> None:
    """The rule: outside isa/spec.py, in the installed packages and examples/, no string
    literal of the code (f-string parts included) holds a mnemonic of spec.TABLE as a dotted
    word, however quoted or punctuated, and no int literal stands for an opcode (see
    `opcode_literals`); code names instructions through spec's row constants (spec.SIMD_ADD).
    Docstrings are prose and may name instructions; comments are not literals. The grammar
    isa/asm.lark and isa/docs.py derive their text from spec, so they spell nothing."""
    bad = [
        f"{path.relative_to(ROOT)}:{entry}"
        for folder in [*PACKAGES, "examples"]
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "isa" / "spec.py"
        for entry in spelled_instructions(path.read_text())
    ]
    assert not bad, "\n".join(bad)


def test_every_instruction_has_semantics_and_a_price() -> None:
    from imcc.compiler.target import load_target
    from imcc.isa.encoding import Instr
    from imcc.runtime.costs import price
    from imcc.runtime.semantics import SEMANTICS

    assert set(SEMANTICS) == set(spec.BY_MNEMONIC)
    target = load_target()
    for row in spec.TABLE:
        operands = tuple(1 for _ in row.fields)
        assert price(target, Instr(row.mnemonic, operands), 4, 4).cycles >= 1
