"""A LoRA adapter on a loaded denoiser: read, checked against the model, attached, fused, and taken off again.

`--lora PATH` (a diffusers / peft LoRA in safetensors; the kohya layout where the pipeline's own
`lora_state_dict` converts it) is put on the denoiser with peft, after the checkpoint has loaded:

  check_file      torch-free: the file exists, is safetensors (pickle only with allow_pickle), its
                  header is whole and its tensor names look like a LoRA's. What `check_inputs` runs.
  attach          converts the state dict as diffusers does, checks every target module exists in the
                  denoiser with the adapter's shapes (InputError before any measure otherwise), injects
                  the adapter (peft) and fuses it.

Fused is the state every measure sees: each adapted layer is swapped back for its base layer, whose
weight is W + scale * B A, so module and parameter names are the base model's and the numbers are
those of a checkpoint with the LoRA merged in by hand. The merge writes into new tensors: the base
weights are never written, so `unload` gives back the very tensors that were there (bit for bit).
`unfused()` puts the peft layers back for a while: sharpness over the adapter's parameters only
(`--params lora`) and quantization with the adapter kept in full precision need them.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .files import PICKLE_SUFFIXES, check_safetensors, file_sha256

if TYPE_CHECKING:
    import torch

ADAPTER = "flatcheck_lora"  # the peft adapter name (one adapter at a time)
# Tensor names of the LoRA layouts diffusers reads: peft/diffusers (lora_A/lora_B), old diffusers attention
# processors (lora.down/lora.up, to_q_lora), kohya (lora_down/lora_up with .alpha), DoRA's magnitude.
LORA_MARKERS = ("lora_A", "lora_B", "lora.down", "lora.up", "lora_down", "lora_up", "_lora.", "lora_magnitude_vector")
# The measured-parameter selection `--params lora`: the adapter's own tensors.
PARAMS_KEYWORD = "lora"
ADAPTER_PARAM_MARKERS = (".lora_A.", ".lora_B.", ".lora_magnitude_vector.", ".lora_embedding_A.", ".lora_embedding_B.")


@dataclass
class LoraInfo:
    """What a report records of the LoRA a run measured."""

    path: str
    sha256: str  # of the file's bytes: which adapter, whatever its name
    format: str  # "diffusers/peft" or "kohya" (converted by the pipeline's lora_state_dict)
    rank: int  # the most common rank
    ranks: list[int]  # every rank it uses
    alpha: float  # the most common lora_alpha
    scale: float  # --lora-scale: multiplies alpha / rank
    target_modules: list[str]  # the denoiser's modules it adapts
    parameters: int  # the adapter's parameters on the denoiser
    text_encoder_tensors: int = 0  # tensors for the text encoders: not applied (the denoiser only)


# ---------------------------------------------------------------------------- the file, torch-free
def check_file(path: str | Path, allow_pickle: bool = False, option: str = "--lora") -> Path:
    """InputError unless `path` is a LoRA file flatcheck reads (checked without torch: what the command line
    checks before anything heavy)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{option}: no such file: '{path}'")
    if p.is_dir():
        found = sorted(p.glob("*.safetensors"))
        if len(found) != 1:
            raise InputError(
                f"{option}: '{path}' is a folder holding {len(found)} .safetensors files; give the LoRA file itself"
            )
        p = found[0]
    if p.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise InputError(
                f"{option}: '{path}' is a pickle file: loading a pickle can run arbitrary code, so it is refused; "
                "convert it to safetensors, or pass --allow-pickle if you trust its source"
            )
        return p
    names = _safetensors_names(p, option)
    if not any(m in n for n in names for m in LORA_MARKERS):
        example = next(iter(names), "none")
        raise InputError(
            f"{option}: '{path}' holds no LoRA tensors (no lora_A/lora_B, lora_down/lora_up names; e.g. '{example}')"
        )
    return p


def _safetensors_names(p: Path, option: str) -> list[str]:
    """The tensor names of a safetensors file, its header checked as a checkpoint's weight files are."""
    try:
        return list(check_safetensors(p))
    except InputError as exc:
        raise InputError(f"{option}: {exc}") from None


# ---------------------------------------------------------------------------- reading and converting
def _read(path: Path) -> tuple[dict, dict | None]:
    """(state dict, diffusers' LoRA adapter metadata or None) of a checked file."""
    import torch

    if path.suffix in PICKLE_SUFFIXES:  # allowed by the caller (check_file); weights only, no code objects
        sd = torch.load(path, map_location="cpu", weights_only=True)
        return dict(sd), None
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get("lora_adapter_metadata")
    return load_file(str(path)), (json.loads(raw) if raw else None)


def _denoiser_part(ckpt, sd: dict, metadata: dict | None) -> tuple[dict, dict | None, dict | None, int, str]:
    """The denoiser's share of a LoRA state dict in peft's layout: (state dict, network alphas, LoraConfig kwargs
    from the file's metadata, text-encoder tensors left out, the layout read)."""
    from diffusers.utils import convert_unet_state_dict_to_peft

    layout = "diffusers/peft"
    alphas = None
    converter = _pipeline_converter(ckpt.pipeline_class)
    kohya = all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")) for k in sd)
    if converter is not None:
        try:
            out = converter(sd)
        except Exception as exc:  # the pipeline's converter refused it: the layout is not one it knows
            raise InputError(f"--lora: {ckpt.pipeline_class} cannot read this LoRA's layout ({exc})") from exc
        sd, alphas = out[0], (out[1] if len(out) > 1 else None)
        layout = "kohya" if kohya else layout
    elif kohya:
        raise InputError(
            f"--lora: a kohya-layout LoRA needs the pipeline's converter; {ckpt.pipeline_class or 'a bare model'} "
            "has none (diffusers converts kohya LoRAs for Stable Diffusion, SDXL, SD3, Flux ...)"
        )
    comp = ckpt.denoiser_component
    prefixes = tuple(p for p in (f"{comp}.", "unet.", "transformer.") if p != "..")
    own = {k: v for k, v in sd.items() if k.startswith(prefixes)}
    text = sum(1 for k in sd if k.startswith(("text_encoder", "te_", "te1_", "te2_")))
    if own:
        sd = {k.split(".", 1)[1]: v for k, v in own.items()}
    else:
        sd = {k: v for k, v in sd.items() if not k.startswith(("text_encoder", "te_", "te1_", "te2_"))}
    if alphas:
        alphas = {k.split(".", 1)[1] if k.startswith(prefixes) else k: v for k, v in alphas.items()}
    if metadata:
        pref = [p for p in prefixes if any(k.startswith(p) for k in metadata)]
        if pref:
            metadata = {k.removeprefix(pref[0]): v for k, v in metadata.items() if k.startswith(pref[0])}
    if not sd:
        raise InputError(f"--lora: the LoRA has no tensors for the denoiser ({type(ckpt.denoiser).__name__})")
    if not any("lora_A" in k for k in sd):
        sd = convert_unet_state_dict_to_peft(sd)
    return sd, alphas, metadata, text, layout


def _pipeline_converter(pipeline_class: str | None):
    """The pipeline class's own `lora_state_dict` (kohya and other layouts -> diffusers'), or None."""
    if not pipeline_class:
        return None
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    fn = getattr(cls, "lora_state_dict", None)
    return fn


def _check_fits(net, sd: dict) -> list[str]:
    """The target modules, after checking each is a layer of `net` whose shapes the adapter's matrices fit."""
    import torch

    modules = dict(net.named_modules())
    targets = sorted({k.split(".lora_")[0] for k in sd if ".lora_" in k})
    if not targets:
        raise InputError("--lora: no lora_A/lora_B tensors after conversion: not a LoRA this model can take")
    missing = [t for t in targets if t not in modules]
    if missing:
        raise InputError(
            f"--lora: {len(missing)} of the LoRA's {len(targets)} target modules are not in this "
            f"{type(net).__name__} (e.g. '{missing[0]}'): it was trained for another model"
        )
    for t in targets:
        m, a, b = modules[t], sd.get(f"{t}.lora_A.weight"), sd.get(f"{t}.lora_B.weight")
        if a is None or b is None:
            raise InputError(f"--lora: module '{t}' has only one of lora_A / lora_B")
        if isinstance(m, torch.nn.Linear):
            fits = a.shape[1:] == (m.in_features,) and b.shape[0] == m.out_features and a.shape[0] == b.shape[1]
        elif isinstance(m, torch.nn.Conv2d):
            fits = a.shape[1] == m.in_channels and b.shape[0] == m.out_channels and a.shape[0] == b.shape[1]
        else:
            raise InputError(f"--lora: target '{t}' is a {type(m).__name__}; a LoRA adapts Linear and Conv2d layers")
        if not fits:
            raise InputError(
                f"--lora: module '{t}' has weight {tuple(m.weight.shape)}, the LoRA's A {tuple(a.shape)} and B "
                f"{tuple(b.shape)} do not fit it: it was trained for another model"
            )
    return targets


def planned_targets(ckpt, path: str | Path, allow_pickle: bool = False) -> list[str]:
    """The modules the LoRA at `path` adapts on ckpt's denoiser (which may live on the meta device), checked as
    attach checks them, nothing injected: what a memory plan needs to count `--params lora`."""
    raw, metadata = _read(check_file(path, allow_pickle))
    sd = _denoiser_part(ckpt, raw, metadata)[0]
    return _check_fits(ckpt.denoiser, sd)


# ---------------------------------------------------------------------------- on the denoiser
@dataclass
class _Slot:
    """One adapted layer: where it sits, its peft wrapper, its base layer, and the base's own parameters."""

    path: str  # the layer's name in the denoiser
    parent: object
    name: str
    wrapper: object  # peft LoraLayer
    base: object  # the base nn.Linear / nn.Conv2d
    originals: dict = field(default_factory=dict)  # parameter name -> the base's own Parameter


class AttachedLora:
    """A LoRA on a denoiser (attach): fused until `unfused()` or `unload()`."""

    def __init__(self, net, slots: list[_Slot], info: LoraInfo, had_peft_config: bool):
        self.net = net
        self.slots = slots
        self.info = info
        self._had_peft_config = had_peft_config
        self.fused = False
        self.loaded = True

    def fuse(self) -> None:
        """Each adapted layer becomes its base layer holding W + scale * B A (new tensors; the base's own are
        kept aside untouched)."""
        import torch

        if self.fused:
            return
        with torch.no_grad():
            for s in self.slots:
                for pname in ("weight", "bias"):
                    p = getattr(s.base, pname, None)
                    if p is not None:
                        s.originals[pname] = p
                        setattr(s.base, pname, torch.nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
                s.wrapper.merge(adapter_names=[ADAPTER])
                setattr(s.parent, s.name, s.base)
        self.fused = True

    def _unfuse(self) -> None:
        if not self.fused:
            return
        for s in self.slots:
            for pname, p in s.originals.items():
                setattr(s.base, pname, p)
            s.originals = {}
            s.wrapper.merged_adapters.clear()
            setattr(s.parent, s.name, s.wrapper)
        self.fused = False

    @contextmanager
    def unfused(self):
        """The peft layers in place (base weights as loaded, the adapter beside them) for the block."""
        was = self.fused
        self._unfuse()
        try:
            yield self
        finally:
            if was:
                self.fuse()

    def unload(self) -> None:
        """Take the LoRA off: every base layer back where it was, with the very tensors it had."""
        if not self.loaded:
            return
        self._unfuse()
        for s in self.slots:
            setattr(s.parent, s.name, s.base)
        if not self._had_peft_config and hasattr(self.net, "peft_config"):
            try:
                delattr(self.net, "peft_config")
            except AttributeError:
                pass
            if getattr(self.net, "_hf_peft_config_loaded", False):
                self.net._hf_peft_config_loaded = False
        if getattr(self.net, "flatcheck_lora", None) is self:
            del self.net.flatcheck_lora
        self.loaded = False


def attach(
    ckpt, path: str | Path, scale: float = 1.0, allow_pickle: bool = False, option: str = "--lora"
) -> AttachedLora:
    """Read the LoRA at `path`, check it fits ckpt's denoiser, inject it with peft at `scale` and fuse it.
    InputError (before any weight of the denoiser changes) for a file that does not fit; option: the flag
    its errors name."""
    try:
        return _attach(ckpt, path, scale, allow_pickle)
    except InputError as exc:
        if option == "--lora":
            raise
        raise InputError(str(exc).replace("--lora:", f"{option}:", 1)) from None


def _attach(ckpt, path: str | Path, scale: float, allow_pickle: bool) -> AttachedLora:
    import math

    try:
        import peft  # noqa: F401
    except ImportError:
        raise InputError(
            "--lora needs the peft package: pip install 'flatcheck[lora]' (or: pip install peft)"
        ) from None
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    if not math.isfinite(scale):
        raise InputError(f"--lora-scale must be a finite number (got {scale})")
    file = check_file(path, allow_pickle)
    net = ckpt.denoiser
    if getattr(net, "flatcheck_lora", None) is not None:
        raise InputError("the denoiser already carries a LoRA from flatcheck; one adapter at a time")
    raw, metadata = _read(file)
    sd, alphas, metadata, text, layout = _denoiser_part(ckpt, raw, metadata)
    targets = _check_fits(net, sd)
    for k, v in sd.items():
        if v.is_floating_point() and not v.isfinite().all():
            raise InputError(f"--lora: tensor '{k}' holds NaN/Inf values")
    ranks = {f"^{k}": v.shape[1] for k, v in sd.items() if "lora_B" in k and v.ndim > 1}
    if metadata:
        kwargs = dict(metadata)
    else:
        from diffusers.utils import get_peft_kwargs

        kwargs = get_peft_kwargs(ranks, alphas, sd, is_unet=True)
    try:
        config = LoraConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"--lora: its adapter settings are not a LoraConfig peft accepts ({exc})") from None
    had_peft_config = hasattr(net, "peft_config")
    dtype = next(net.parameters()).dtype
    device = next(net.parameters()).device
    sd = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
    inject_adapter_in_model(config, net, adapter_name=ADAPTER)
    result = set_peft_model_state_dict(net, sd, adapter_name=ADAPTER)
    slots = []
    modules = dict(net.named_modules())
    for name, m in list(modules.items()):
        if isinstance(m, LoraLayer) and ADAPTER in m.lora_A:
            parent_name, _, child = name.rpartition(".")
            slots.append(_Slot(name, modules[parent_name] if parent_name else net, child, m, m.base_layer))
            m.set_scale(ADAPTER, scale)
            for p in m.parameters():
                if p is not m.base_layer.weight and p is not getattr(m.base_layer, "bias", None):
                    p.requires_grad_(False)
    adapter_params = sum(p.numel() for s in slots for n, p in s.wrapper.named_parameters() if "lora_" in n)
    handle = AttachedLora(
        net,
        slots,
        LoraInfo(
            path=str(file),
            sha256=file_sha256(file),
            format=layout,
            rank=int(config.r),
            ranks=sorted({int(s.wrapper.r[ADAPTER]) for s in slots}),
            alpha=float(config.lora_alpha),
            scale=float(scale),
            target_modules=targets,
            parameters=adapter_params,
            text_encoder_tensors=text,
        ),
        had_peft_config,
    )
    unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if "lora_" in k]
    if unexpected or len(slots) != len(targets):
        handle.unload()
        raise InputError(f"--lora: peft did not place every tensor (e.g. '{(unexpected or targets)[0]}')")
    net.flatcheck_lora = handle
    handle.fuse()
    return handle


def attached(net) -> AttachedLora | None:
    """The LoRA flatcheck put on this denoiser, if any."""
    return getattr(net, "flatcheck_lora", None)


def adapter_parameters(net) -> list[tuple[str, torch.nn.Parameter]]:
    """The adapter's own parameters (lora_A, lora_B ...), named as in the unfused denoiser, fused or not: what
    `--params lora` measures (on the unfused layers) and a memory plan counts. [] without a LoRA."""
    handle = attached(net)
    if handle is None:
        # A memory plan's meta copy of a denoiser with a LoRA (footprint.meta_copy) has no adapter: the adapted
        # layers' own weights stand in for it, which bounds its vectors and gradients from above.
        modules = dict(net.named_modules())
        return [(f"{t}.weight", modules[t].weight) for t in getattr(net, "flatcheck_lora_targets", ())]
    return [
        (f"{s.path}.{n}", p)
        for s in handle.slots
        for n, p in s.wrapper.named_parameters()
        if any(m in f".{n}." for m in ADAPTER_PARAM_MARKERS)
    ]
