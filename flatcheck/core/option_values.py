"""The values of the run options that name things (--sampler, --timesteps, --features, --fid-weights), checked
without torch.

auditing.validate runs these for every AuditOptions made (the command line before a model loads or a --dry-run
plans, the Python API before it loads), so a bad value is one InputError before any work: the sampler and the
feature network used to be refused only when the run reached them (20-40 s in, or never: an FD "not scored"),
and a --dry-run plan took them as they were (issue 26). Whether a --timesteps range fits the schedule is known
from the scheduler config (`check_timesteps`), also before the weights load.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, OptionError

# Short names for --sampler -> diffusers scheduler class (and fixed settings); core.sampling builds them.
SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm-solver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
# Flow-matching models take flow samplers; "ddim", the default, means the checkpoint's own.
FLOW_SAMPLERS: dict[str, str] = {"euler": "FlowMatchEulerDiscreteScheduler", "heun": "FlowMatchHeunDiscreteScheduler"}
# --features: the feature networks core.fd.extractors loads; those whose weights are bundled .safetensors files.
FEATURES = ("inception", "digits-cnn", "patches-cnn", "clip", "dinov2")
SMALL_CNN_FEATURES = ("digits-cnn", "patches-cnn")


def check_sampler_name(name: str | None) -> str:
    """The normalised --sampler name ('checkpoint' for None); InputError for an unknown one."""
    if name is None:
        return "checkpoint"
    key = name.strip().lower()
    if key != "checkpoint" and key not in SAMPLERS:
        raise InputError(f"unknown sampler '{name}' (choose from: checkpoint, {', '.join(SAMPLERS)})")
    return key


def parse_timesteps(spec: str | None, num_train_timesteps: int | None) -> tuple[int, int]:
    """'LO:HI' (HI exclusive) -> (lo, hi); None -> the whole schedule [0, T). num_train_timesteps None: the form
    alone is checked (T not known yet; HI then stays as given, or None when left out)."""
    if spec is None:
        return 0, num_train_timesteps
    try:
        lo_s, hi_s = str(spec).split(":")
        lo = int(lo_s) if lo_s.strip() else 0
        hi = int(hi_s) if hi_s.strip() else num_train_timesteps
    except ValueError:
        raise OptionError("timesteps", f"'{spec}' is not LO:HI (e.g. 0:1000)") from None
    if num_train_timesteps is None:
        if lo < 0 or (hi is not None and hi <= lo):
            raise OptionError("timesteps", f"'{spec}' must satisfy 0 <= LO < HI")
        return lo, hi
    if not 0 <= lo < hi <= num_train_timesteps:
        raise OptionError("timesteps", f"'{spec}' must satisfy 0 <= LO < HI <= {num_train_timesteps}")
    return lo, hi


def check_timesteps(spec: str | None, scheduler_config: dict, where: str) -> None:
    """--timesteps against the schedule a checkpoint trains on (its scheduler config, read without torch);
    where: whose schedule it is (core.checkpoint's scheduler_origin)."""
    n = scheduler_config.get("num_train_timesteps", 1000)
    try:
        parse_timesteps(spec, n)
    except OptionError as exc:
        raise InputError(f"--timesteps {exc.problem}: the schedule ({where}) is {n} steps long") from None


def check_features(features: str | None, weights: str | None) -> None:
    """--features is a feature network flatcheck knows; --fid-weights an existing file of a kind it can take."""
    key = None if features is None else features.strip().lower()
    if key is not None and key not in FEATURES:
        raise InputError(f"unknown --features '{features}' (choose from: {', '.join(FEATURES)})")
    if weights is None:
        return
    path = Path(str(weights)).expanduser()
    if not str(weights).strip() or not path.is_file():
        raise InputError(f"--fid-weights '{weights}' is not a file")
    if key == "dinov2":
        raise InputError(
            "--features dinov2 takes no --fid-weights: torch-fidelity loads DINOv2 through torch.hub (cache it there)"
        )
    if key in SMALL_CNN_FEATURES and path.suffix != ".safetensors":
        raise InputError(f"--fid-weights for {key} must be a .safetensors file (got '{path.name}')")
