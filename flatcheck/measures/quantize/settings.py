"""What to quantize: bit-width settings and the layer policy, parsed from user options.

A setting is one quantized variant of the model that the measure compares against full
precision: simulated WxAy (weights x bits per output channel, activations y bits per
tensor) or a bitsandbytes kernel (LLM.int8, nf4, fp4) on the Linear layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError, OptionError

MIN_BITS, MAX_BITS = 2, 16
FULL = "fp"  # in --wbits/--abits: leave this side in full precision
BNB_TYPES = ("int8", "nf4", "fp4")
FIRST_LAST_POLICIES = ("same", "8", "fp")
ATTENTION_POLICIES = ("quant", "fp")


@dataclass(frozen=True)
class QuantSetting:
    """One quantized variant. wbits/abits None = that side stays in full precision."""

    name: str  # "W8A8", "W4A-fp", "bnb-nf4"
    backend: str  # "simulated" or "bnb"
    wbits: int | None = None
    abits: int | None = None
    bnb_type: str | None = None

    @classmethod
    def simulated(cls, wbits: int | None, abits: int | None) -> "QuantSetting":
        name = f"W{wbits or '-fp'}A{abits or '-fp'}"
        return cls(name, "simulated", wbits, abits)

    @classmethod
    def bnb(cls, kind: str) -> "QuantSetting":
        return cls(f"bnb-{kind}", "bnb", 8 if kind == "int8" else 4, None, kind)


@dataclass(frozen=True)
class LayerPolicy:
    """How the first/last layers and the attention projections are treated.

    first_last: "same" (quantized like the rest), "8" (kept at W8A8, the Q-Diffusion/BRECQ
    practice) or "fp" (full precision). attention: "quant" (to_q/to_k/to_v/to_out quantized
    like any Linear) or "fp". The attention matmuls (QK^T, softmax.V) always run in full
    precision: only Conv2d and Linear layers are quantized.
    """

    first_last: str = "same"
    attention: str = "quant"

    def __post_init__(self):
        if self.first_last not in FIRST_LAST_POLICIES:
            raise OptionError(
                "first_last", f"must be one of {', '.join(FIRST_LAST_POLICIES)} (got '{self.first_last}')"
            )
        if self.attention not in ATTENTION_POLICIES:
            raise OptionError("attention", f"must be one of {', '.join(ATTENTION_POLICIES)} (got '{self.attention}')")

    def describe(self) -> str:
        fl = {"same": "quantized like the rest", "8": "kept at W8A8", "fp": "kept in full precision"}[self.first_last]
        at = "quantized like any Linear" if self.attention == "quant" else "kept in full precision"
        return f"first/last layers {fl}; attention projections {at}; attention matmuls in full precision"

    def bits_for(self, role: str, wbits: int | None, abits: int | None) -> tuple[int | None, int | None]:
        """The (wbits, abits) a layer of this role gets under setting (wbits, abits)."""
        if role in ("first", "last"):
            if self.first_last == "fp":
                return None, None
            if self.first_last == "8":
                return (None if wbits is None else max(wbits, 8)), (None if abits is None else max(abits, 8))
        if role == "attention" and self.attention == "fp":
            return None, None
        return wbits, abits


def parse_bit_list(text: str, option: str, allow_full: bool = False) -> list[int | None]:
    """'8,6,4' -> [8, 6, 4]; each width in 2..16 ('fp' = full precision where allowed)."""
    items = [s.strip() for s in str(text).split(",")]
    if not items or any(not s for s in items):
        raise InputError(f"{option} '{text}' is not a comma-separated list of bit widths (e.g. 8,6,4)")
    out: list[int | None] = []
    for s in items:
        if allow_full and s.lower() in (FULL, "full", "none"):
            out.append(None)
            continue
        try:
            b = int(s)
        except ValueError:
            hint = f" or '{FULL}'" if allow_full else ""
            raise InputError(
                f"{option} '{text}': '{s}' is not a bit width (integers {MIN_BITS}-{MAX_BITS}{hint})"
            ) from None
        if not MIN_BITS <= b <= MAX_BITS:
            raise InputError(f"{option} '{text}': {b} bits is out of range (widths {MIN_BITS}-{MAX_BITS})")
        out.append(b)
    return out


def settings_from_options(
    bits: str | None, wbits: str | None = None, abits: str | None = None, bnb: str | None = None
) -> list[QuantSetting]:
    """Settings from the CLI options.

    --bits B1,B2 gives W{B}A{B} for each width. --wbits / --abits set one side and win over
    --bits; a side set by neither stays in full precision (e.g. --wbits 4 alone is weight-only).
    Without any of them: 8,6,4. A list of one width applies to every setting.
    """
    w = parse_bit_list(wbits, "--wbits", allow_full=True) if wbits is not None else None
    a = parse_bit_list(abits, "--abits", allow_full=True) if abits is not None else None
    b = parse_bit_list(bits, "--bits") if bits is not None else (None if (w or a) else [8, 6, 4])
    n = max(len(x) for x in (b, w, a) if x is not None)
    for values, option in ((b, "--bits"), (w, "--wbits"), (a, "--abits")):
        if values is not None and len(values) not in (1, n):
            raise InputError(
                f"{option} has {len(values)} widths but {n} settings were asked for: give one width or {n}"
            )

    def pick(values, i):
        return None if values is None else values[0] if len(values) == 1 else values[i]

    settings = []
    for i in range(n):
        wb = pick(w, i) if w is not None else pick(b, i)
        ab = pick(a, i) if a is not None else pick(b, i)
        if wb is None and ab is None:
            raise InputError("a setting with both weights and activations in full precision quantizes nothing")
        settings.append(QuantSetting.simulated(wb, ab))
    settings += [QuantSetting.bnb(kind) for kind in _bnb_types(bnb)]
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise InputError(f"the same setting is asked for twice: {', '.join(names)}")
    return settings


def _bnb_types(text: str | None) -> list[str]:
    if not text:
        return []
    kinds = [s.strip().lower() for s in text.split(",")]
    for k in kinds:
        if k not in BNB_TYPES:
            raise OptionError("bnb", f"'{text}': '{k}' is not one of {', '.join(BNB_TYPES)}")
    return kinds


def parse_setting(name: str) -> QuantSetting:
    """A setting by name: 'W8A8', 'W4A-fp' (a side in full precision), 'bnb-int8', 'bnb-nf4', 'bnb-fp4'."""
    import re

    m = re.fullmatch(r"W(\d+|-fp)A(\d+|-fp)", name.strip(), re.IGNORECASE)
    if m:
        w, a = (None if g.lower() == "-fp" else int(g) for g in m.groups())
        for bits in (w, a):
            if bits is not None and not MIN_BITS <= bits <= MAX_BITS:
                raise InputError(f"quantize setting '{name}': widths must be {MIN_BITS}-{MAX_BITS}")
        return QuantSetting.simulated(w, a)
    m = re.fullmatch(r"bnb-(int8|nf4|fp4)", name.strip(), re.IGNORECASE)
    if m:
        return QuantSetting.bnb(m.group(1).lower())
    raise InputError(f"quantize setting '{name}' is not WxAy (e.g. W8A8, W4A-fp) or bnb-int8/nf4/fp4")
