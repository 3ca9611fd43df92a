"""Seeded fuzzing shared by the fuzz tests: how many cases each runs and what a clean end is.

A clean end is a result or an imcc Diagnostic that carries a location; anything else (another
exception, a Diagnostic without a location) is a finding. The default run takes a few thousand
cases in all; `IMCC_FUZZ_SCALE=N` multiplies every count for the long run, and
`IMCC_FUZZ_REPORT=path` appends each test's counts to that file as JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from imcc.isa.diagnostics import Diagnostic


@contextlib.contextmanager
def bounded_memory(spare: int = 4 << 30) -> Iterator[None]:
    """Cap the address space at what the process holds plus `spare` bytes while fuzzing, so a
    huge allocation fails as MemoryError (a finding) instead of pushing a shared machine into
    swap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as file:
        held = int(file.read().split()[0]) * resource.getpagesize()
    limit = held + spare if hard == resource.RLIM_INFINITY else min(hard, held + spare)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def cases(default: int) -> int:
    """How many cases a fuzz test runs: `default`, times IMCC_FUZZ_SCALE."""
    return max(1, int(default * float(os.environ.get("IMCC_FUZZ_SCALE", "1"))))


class Tally:
    """Counts how fuzz cases end; `assert_clean` fails on any unhandled exception."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcomes: Counter[str] = Counter()
        self.findings: list[str] = []
        self.slowest = 0.0

    def run(self, case: str, call: Callable[[], Any]) -> Any:
        """Run one case; returns its result, or None when it ended in a Diagnostic."""
        start = time.perf_counter()
        try:
            result = call()
        except Diagnostic as exc:
            if exc.loc is None:
                self.outcomes["diagnostic without location"] += 1
                self.findings.append(f"{case}: no location: {exc}")
            else:
                self.outcomes["diagnostic"] += 1
            return None
        except Exception as exc:  # the finding a fuzz test exists for
            self.outcomes["unhandled"] += 1
            tail = traceback.format_exception(exc)[-3:]
            self.findings.append(f"{case}: {type(exc).__name__}: {exc}\n{''.join(tail)}")
            return None
        finally:
            self.slowest = max(self.slowest, time.perf_counter() - start)
        self.outcomes["ok"] += 1
        return result

    def finding(self, case: str, what: str) -> None:
        """A problem the caller detected itself (a leftover file, a wrong answer)."""
        self.outcomes[what] += 1
        self.findings.append(f"{case}: {what}")

    def assert_clean(self) -> None:
        report = os.environ.get("IMCC_FUZZ_REPORT")
        if report:
            with open(report, "a") as file:
                counts = {"test": self.name, **self.outcomes, "slowest_s": self.slowest}
                file.write(json.dumps(counts) + "\n")
        shown = "\n".join(self.findings[:10])
        assert not self.findings, f"{len(self.findings)} findings in {self.name}:\n{shown}"
