"""The hardware a binary is built for: the chip, its cores and units, and the cost table.

Part of the ISA contract: the compiler reads it (from TOML presets, compiler/target.py) to map a
model, the container records it, and the runtime reads it back from the binary to know how many
cores, arrays and registers exist and what every event costs. Nothing else is needed to run.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from imcc.isa import spec
from imcc.isa.diagnostics import Loc, TargetError


class SignEncoding(enum.StrEnum):
    """How a signed weight is stored (XbarSpec.sign_encoding)."""

    DIFFERENTIAL = "differential"  # a G+ and a G- cell per slice
    OFFSET = "offset"  # ISAAC: W + 2^(b-1) on one cell per slice


class AdcRange(enum.StrEnum):
    """What sets each ADC's full-scale range (XbarSpec.adc_range)."""

    FULL_SCALE = "full-scale"  # the array's largest possible column current
    COLUMN = "column"  # per column, from the weights or calibration data
    SLICE = "slice"  # per slice: the columns of one bit slice share one range


SIGN_ENCODINGS = tuple(SignEncoding)
ADC_RANGES = tuple(AdcRange)

# Where a key of a target sits in its source, for error locations: (table, key or None for the
# table itself) -> a location (file:line:col of a TOML file); None when the source is not text.
Locate = Callable[[str, str | None], Loc]


def _nowhere(table: str, key: str | None) -> Loc:
    return None


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices` (difflib), or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipSpec:
    cores: int
    mesh_cols: int  # cores sit on a 2-D mesh, row-major, this many per row
    global_memory_words: int
    clock_ghz: float
    # idle cores are power-gated: leakage is charged only for the cores a program uses (its
    # code beyond a lone halt, or an array bound to an image); optional, default off
    power_gating: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSpec:
    registers: int
    buffer_words: int
    word_bytes: int  # bytes per buffer word, for memory and network traffic costs
    simd_lanes: int
    arrays: int
    # words of messages each of the core's receive queues holds, one queue per sending core
    # (sent to it, not yet received); a sender stalls while its message does not fit its own
    # queue (cycle mode), and the loader rejects a program that would then deadlock
    # (isa/protocol.py). 0: unbounded (the default)
    recv_queue_words: int = 0
    # instructions a core's instruction memory holds (PUMA's: 512); code must fit it.
    # 0: unbounded (the default)
    instruction_words: int = 0
    # units of a core work at once: per-unit issue with a scoreboard on buffer ranges (cycle
    # mode; runtime/engine.py). Off (the default): one instruction at a time
    overlap: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TileSpec:
    """Cores grouped into tiles, each with a memory its cores share (ISAAC's and PUMA's 64 KB
    eDRAM), reached with `tile.load` / `tile.store`: the level between a core's buffer and the
    chip's global memory. Core c belongs to tile c // cores."""

    cores: int  # cores per tile
    memory_words: int  # the shared memory, in words of core.word_bytes
    memory_cycles: int  # fixed latency of one access
    memory_words_per_cycle: int  # the tile bus: words moved per cycle after that latency
    memory_pj_per_word: float  # per word read or written


@dataclass(frozen=True, slots=True, kw_only=True)
class XbarSpec:
    rows: int
    cols: int
    cell_bits: int  # bits one cell stores: 2^cell_bits conductance levels
    dac_bits: int  # input bits applied per step; 1 = bit-serial
    adc_bits: int
    cols_per_adc: int  # columns multiplexed onto one ADC
    device: str  # default device model of the arrays
    sign_encoding: str  # a SignEncoding: "differential" or "offset"
    adc_range: str  # an AdcRange: "full-scale", "column" or "slice"


@dataclass(frozen=True, slots=True, kw_only=True)
class AcamSpec:
    """The analog-CAM tree unit of every core (DESIGN section 7), with its own cost figures.

    A row of `cols` cells holds one root-to-leaf path; a cell stores a range of input levels
    (`levels` of them: the DAC's); features needing more levels span adjacent cells, and rows
    wider than one array span several arrays of a core whose match lines are ANDed.
    """

    arrays: int  # CAM arrays per core
    rows: int  # rows (match lines) per array
    cols: int  # cells per row of one array
    levels: int  # input levels per cell; a stored bound sits between two of them
    leaf_words: int  # leaf RAM words per row: the widest leaf vector an array can hold
    device: str  # default CAM device model
    encode_cycles: int  # one comparison step of the rank coder, per group of simd lanes
    search_cycles: int  # drive the data lines, evaluate and sense the match lines
    leaf_cycles: int  # match vector -> leaf RAM addresses -> read -> accumulate
    program_cycles_per_row: int
    encode_pj: float  # per threshold comparison of the rank coder
    search_pj_per_row: float  # match line precharge and sensing, per row searched
    search_pj_per_cell: float  # data line drive, per cell (column) of the array
    leaf_pj_per_word: float  # leaf RAM read and add, per word
    program_pj_per_cell: float  # both bounds of one cell


@dataclass(frozen=True, slots=True, kw_only=True)
class CostTable:
    """Latency in cycles and energy in pJ per event; each preset cites its sources."""

    xbar_read_cycles: int  # one analog read of an array (DAC settle + integrate), per input step
    adc_cycles: int  # one conversion; columns sharing an ADC convert one after another
    shift_add_cycles: int  # per input step, the digital accumulation behind the ADCs
    xbar_program_cycles_per_row: int
    simd_cycles: int  # per group of `simd_lanes` elements
    simd_transcendental_cycles: int
    mem_cycles: int  # fixed latency of a global memory access
    mem_words_per_cycle: int
    noc_hop_cycles: int
    noc_words_per_cycle: int
    ctl_cycles: int
    dac_pj: float  # per row driven per input step
    xbar_read_pj: float  # per array per input step
    adc_pj: float  # per conversion
    shift_add_pj: float  # per column per input step
    xbar_program_pj_per_cell: float
    simd_pj: float  # per lane operation
    simd_transcendental_pj: float
    buffer_pj_per_word: float  # local buffer access
    mem_pj_per_word: float  # global memory access
    noc_pj_per_word_hop: float
    ctl_pj: float
    leakage_pj_per_cycle: float  # per core


@dataclass(frozen=True, slots=True, kw_only=True)
class AreaTable:
    """Silicon area in mm2 per component, for a chip's `area_mm2`; each preset cites its sources.

    Per-core figures are a core's share where cores share a unit (a tile's buffer, a router of a
    concentrated mesh); `Target.area_mm2` multiplies them out.
    """

    array_mm2: float  # one crossbar array (cells and their drivers)
    dac_mm2: float  # one DAC; an array has one per row
    adc_mm2: float  # one ADC; an array has ceil(cols / cols_per_adc)
    simd_mm2: float  # a core's SIMD unit (all its lanes, activation units included)
    buffer_mm2: float  # a core's local buffer (its share of a shared one)
    router_mm2: float  # a core's network router (its share of a shared one)
    core_other_mm2: float  # the rest of a core: sample-and-hold, shift-add, registers, control
    memory_mm2: float  # the global memory
    chip_other_mm2: float  # chip-level I/O and links (HyperTransport, ...)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str
    description: str
    chip: ChipSpec
    core: CoreSpec
    xbar: XbarSpec
    cost: CostTable
    defaults: tuple[tuple[str, Any], ...] = ()  # compile option defaults (weight_bits, ...)
    acam: AcamSpec | None = None  # the analog-CAM tree unit, on targets that have one
    tile: TileSpec | None = None  # tiles and their shared memories, on targets that have them
    area: AreaTable | None = None  # silicon area per component, on targets that cite one

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["defaults"] = dict(self.defaults)
        if self.acam is None:  # absent, not null: targets without CAMs keep their fingerprint
            del data["acam"]
        if self.area is None:  # likewise: targets without an area table keep their fingerprint
            del data["area"]
        if self.tile is None:  # likewise: targets without tiles
            del data["tile"]
        if not self.chip.power_gating:  # an optional key left at its default: likewise
            del data["chip"]["power_gating"]
        for key in ("recv_queue_words", "instruction_words", "overlap"):
            if not getattr(self.core, key):
                del data["core"][key]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the canonical JSON: the binary and its target must agree on it."""
        return hashlib.sha256(self.to_json().encode()).digest()

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], origin: str = "target", locate: Locate = _nowhere
    ) -> Target:
        """Build and validate; every unknown, missing or out-of-range key is a TargetError
        naming the key and its table, located by `locate` (a TOML file's line and column).
        Unknown keys are reported first, with the closest known key, so that a misspelt
        required key reads as misspelt rather than missing."""
        if not isinstance(data, dict):
            raise TargetError(f"{origin}: a target must be a table, not {type(data).__name__}")
        tables = {"chip": ChipSpec, "core": CoreSpec, "xbar": XbarSpec, "cost": CostTable,
                  "acam": AcamSpec, "area": AreaTable, "tile": TileSpec}  # fmt: skip
        known = ("name", "description", "defaults", *tables)
        for key in data:
            if key not in known:
                raise TargetError(
                    f"{origin}: unknown top-level key {key!r}{suggest(key, known)}; expected "
                    f"{', '.join(known)}",
                    locate("", key),
                )
        parts: dict[str, Any] = {}
        for key, kind in tables.items():
            if key in data or key in ("chip", "core", "xbar", "cost"):  # the rest optional
                parts[key] = _build(kind, data.get(key), origin, key, locate)
        for key in ("name", "description"):
            if not isinstance(data.get(key), str):
                raise TargetError(f"{origin}: {key!r} must be a string", locate("", key))
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise TargetError(f"{origin}: [defaults] must be a table", locate("defaults", None))
        target = cls(
            name=data["name"],
            description=data["description"],
            defaults=tuple(sorted(defaults.items())),
            **parts,
        )
        target.validate(origin, locate)
        return target

    @classmethod
    def from_json(cls, text: str, origin: str = "target") -> Target:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TargetError(f"{origin}: not valid JSON ({exc.msg})") from None
        return cls.from_dict(data, origin)

    def validate(self, origin: str = "target", locate: Locate = _nowhere) -> None:
        """Ranges that the encoding and the simulators rely on."""
        limits = {
            "chip.cores": (self.chip.cores, 1, 1 << spec.WIDTH[spec.OperandKind.CORE]),
            "core.registers": (self.core.registers, 4, 1 << spec.WIDTH[spec.OperandKind.REG]),
            "core.arrays": (self.core.arrays, 0, 1 << spec.WIDTH[spec.OperandKind.ARRAY]),
            "core.buffer_words": (self.core.buffer_words, 16, 1 << 30),
            "core.simd_lanes": (self.core.simd_lanes, 1, 1 << 16),
            "core.word_bytes": (self.core.word_bytes, 1, 8),
            "core.recv_queue_words": (self.core.recv_queue_words, 0, 1 << 30),
            "core.instruction_words": (self.core.instruction_words, 0, 1 << 30),
            "chip.mesh_cols": (self.chip.mesh_cols, 1, self.chip.cores),
            "chip.global_memory_words": (self.chip.global_memory_words, 1, 1 << 40),
            "xbar.rows": (self.xbar.rows, 1, 1 << 16),
            "xbar.cols": (self.xbar.cols, 1, 1 << 16),
            "xbar.cell_bits": (self.xbar.cell_bits, 1, 16),
            "xbar.dac_bits": (self.xbar.dac_bits, 1, 16),
            "xbar.adc_bits": (self.xbar.adc_bits, 1, 32),
            "xbar.cols_per_adc": (self.xbar.cols_per_adc, 1, self.xbar.cols),
        }
        limits.update(self._unit_limits(origin, locate))
        for name, (value, lo, hi) in limits.items():
            if not lo <= value <= hi:
                raise TargetError(
                    f"{origin}: {name} = {value} is outside [{lo}, {hi}]",
                    locate(*name.split(".")),
                )
        if self.xbar.sign_encoding not in SIGN_ENCODINGS:
            raise TargetError(
                f"{origin}: xbar.sign_encoding = {self.xbar.sign_encoding!r}; expected one of "
                f"{', '.join(SIGN_ENCODINGS)}",
                locate("xbar", "sign_encoding"),
            )
        if self.xbar.adc_range not in ADC_RANGES:
            raise TargetError(
                f"{origin}: xbar.adc_range = {self.xbar.adc_range!r}; expected one of "
                f"{', '.join(ADC_RANGES)}",
                locate("xbar", "adc_range"),
            )
        if self.chip.clock_ghz <= 0:
            raise TargetError(
                f"{origin}: chip.clock_ghz must be positive", locate("chip", "clock_ghz")
            )
        for field in dataclasses.fields(CostTable):
            if getattr(self.cost, field.name) < 0:
                raise TargetError(
                    f"{origin}: cost.{field.name} must not be negative", locate("cost", field.name)
                )
        if self.area is not None:
            for field in dataclasses.fields(AreaTable):
                if getattr(self.area, field.name) < 0:
                    raise TargetError(
                        f"{origin}: area.{field.name} must not be negative",
                        locate("area", field.name),
                    )

    def _unit_limits(self, origin: str, locate: Locate) -> dict[str, tuple[int, int, int]]:
        """validate's ranges for the optional units, [acam] and [tile]; negative figures
        among their costs are errors at once."""
        limits: dict[str, tuple[int, int, int]] = {}
        if self.acam is not None:
            acam = self.acam
            limits.update(
                {
                    "acam.arrays": (acam.arrays, 1, 1 << spec.WIDTH[spec.OperandKind.CAM]),
                    "acam.rows": (acam.rows, 1, 1 << 16),
                    # a DAC vector of one array's cells must fit acam.encode's count field n
                    "acam.cols": (acam.cols, 1, spec.ACAM_ENCODE.field("n").max),
                    "acam.levels": (acam.levels, 2, (1 << 16) - 1),
                    "acam.leaf_words": (acam.leaf_words, 1, 1 << 16),
                }
            )
            for field in dataclasses.fields(AcamSpec):
                value = getattr(acam, field.name)
                if field.type in ("int", "float") and value < 0:
                    raise TargetError(
                        f"{origin}: acam.{field.name} must not be negative",
                        locate("acam", field.name),
                    )
        if self.tile is not None:
            tile = self.tile
            limits.update(
                {
                    "tile.cores": (tile.cores, 1, self.chip.cores),
                    "tile.memory_words": (tile.memory_words, 16, 1 << 30),
                    "tile.memory_cycles": (tile.memory_cycles, 0, 1 << 20),
                    "tile.memory_words_per_cycle": (tile.memory_words_per_cycle, 1, 1 << 16),
                }
            )
            if tile.memory_pj_per_word < 0:
                raise TargetError(
                    f"{origin}: tile.memory_pj_per_word must not be negative",
                    locate("tile", "memory_pj_per_word"),
                )
        return limits

    @property
    def area_mm2(self) -> float | None:
        """Chip area from the [area] table (None without one): every core with all its arrays,
        their DACs (one per row) and ADCs, SIMD unit, buffer, router and the rest, plus the
        global memory and chip-level I/O. CAM arrays are not in the table yet."""
        area = self.area
        if area is None:
            return None
        xbar = self.xbar
        adcs = -(-xbar.cols // xbar.cols_per_adc)
        array = area.array_mm2 + xbar.rows * area.dac_mm2 + adcs * area.adc_mm2
        core = (
            self.core.arrays * array
            + area.simd_mm2
            + area.buffer_mm2
            + area.router_mm2
            + area.core_other_mm2
        )
        return self.chip.cores * core + area.memory_mm2 + area.chip_other_mm2

    def words(self, space: spec.Space) -> int:
        """Size of an address space: a core's buffer, its tile's memory (0 on a target
        without tiles) or the global memory."""
        if space is spec.Space.GLOBAL:
            return self.chip.global_memory_words
        if space is spec.Space.TILE:
            return self.tile.memory_words if self.tile is not None else 0
        return self.core.buffer_words

    def tile_of(self, core: int) -> int:
        """The tile a core belongs to (each core is a tile of its own without [tile])."""
        return core // self.tile.cores if self.tile is not None else core

    @property
    def tiles(self) -> int:
        """How many tiles the chip has (the last may be partly filled)."""
        return -(-self.chip.cores // self.tile.cores) if self.tile is not None else 0

    def mesh_position(self, core: int) -> tuple[int, int]:
        return divmod(core, self.chip.mesh_cols)

    def hops(self, src: int, dst: int) -> int:
        """Manhattan distance on the mesh (XY routing)."""
        (r0, c0), (r1, c1) = self.mesh_position(src), self.mesh_position(dst)
        return abs(r0 - r1) + abs(c0 - c1)


def _build(kind: type, data: Any, origin: str, table: str, locate: Locate) -> Any:
    """One table of a target: unknown keys first (with the closest known key), then missing
    keys, then types; each error names the key, the table and `origin`."""
    where = f"{origin}: [{table}]"
    if not isinstance(data, dict):
        raise TargetError(f"{where} is missing or not a table", locate(table, None))
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for key in data:
        if key not in fields:
            raise TargetError(
                f"{where} has unknown key {key!r}{suggest(key, fields)}; expected "
                f"{', '.join(fields)}",
                locate(table, key),
            )
    missing = [
        name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
    ]
    if missing:
        raise TargetError(f"{where} is missing {missing}", locate(table, None))
    values: dict[str, Any] = {}
    kinds: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "str": (str,),
        "bool": (bool,),
    }
    for name, field in fields.items():
        if name not in data:  # an optional key: its default
            continue
        value: Any = data[name]
        wrong_bool = isinstance(value, bool) != (field.type == "bool")
        if wrong_bool or not isinstance(value, kinds[str(field.type)]):
            raise TargetError(
                f"{where}: {name} = {value!r} must be of type {field.type}", locate(table, name)
            )
        values[name] = float(data[name]) if field.type == "float" else data[name]
    return kind(**values)
