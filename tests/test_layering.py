"""The architecture's rules, checked on the source: who imports whom, and where the
instruction table lives (DESIGN sections 1 and 4)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from imcc.isa import spec

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"isa": "imcc.isa", "compiler": "imcc.compiler", "runtime": "imcc.runtime",
            "frontends": "imcc.frontends", "imcc": "imcc"}  # fmt: skip
# What each package may import from us (DESIGN section 1).
ALLOWED = {
    "isa": {"imcc.isa"},
    "compiler": {"imcc.isa", "imcc.compiler"},
    "runtime": {"imcc.isa", "imcc.runtime"},
    "frontends": {"imcc.isa", "imcc.compiler.ir", "imcc.frontends"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_packages_import_only_what_the_layering_allows(folder: str) -> None:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imports_of(path):
            ours = module == "imcc" or module.startswith("imcc.")
            if ours and not any(module == a or module.startswith(a + ".") for a in ALLOWED[folder]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
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
