"""The quantize measure: how much a checkpoint loses under W/A quantization, and where.

For each setting (simulated WxAy over every Conv2d and Linear, or bitsandbytes kernels on the
Linear layers) the model generates from the same seeds and noise as full precision, and we
report the paired sample drift (MSE, PSNR), the probe-bank loss and its paired change, and,
for one setting, the per-layer sensitivity ranking. FD/FID and KID per setting (`fid`, `kid`,
`fid_change`) are scored when the run has a reference (a scorer is given).

Everything measured on images comes from one pass over batches of seeds (drift.paired_pass): for
each batch, every setting samples those seeds under its quantization (entered for the batch and
undone after it), and the batch of the full-precision samples and of every setting's samples is
decoded once (latent models); its drift, FD features and grid images are taken from it and the
batch is dropped. So no setting's samples are ever held whole (50,000 SD 1.5 latents are 3.2 GB a
setting), only the shared full-precision samples, and nothing is decoded twice. Entering a setting
for every batch costs little next to sampling the batch: simulated settings point the weights at
quantized copies made once (WeightCache, up to its byte budget; the rest per call) and add input hooks;
bitsandbytes settings re-quantize their Linear layers for every batch (not yet timed on a GPU).

The model is left exactly as it was: weight swaps and hooks are undone after every batch,
and the whole measure runs inside `perturb.untouched` as a second guard (it re-points any
swapped parameter and reports a write; it keeps no copy of the model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...core import lora
from ...core.probes import ProbeBank, bank_losses
from ...core.progress import Counter, Progress
from ...core.seeds import calibration_seed
from ...core.stats import Estimate, mean_estimate, per_item
from ...errors import InputError, OptionError
from .bnb_backend import bnb_linear_swap
from .calibrate import HEADROOM, HEADROOM_BITS, activation_ranges, collect_activations
from .config import QuantizeConfig, check_config, sensitivity_setting  # noqa: F401 - re-exported
from .drift import FULL, drift_estimates, paired_pass, per_sample_mse
from .sensitivity import LayerSensitivity, layer_sensitivity
from .settings import QuantSetting
from .simulated import WeightCache, has_grid, layer_plan, quantizable_layers, simulated_quantization

KEPT_IMAGES = 64  # keep_samples: the first images of every set, for the report's grids


@dataclass
class FullPrecisionResult:
    probe_loss: Estimate
    sample_std: float  # pixel std of the full-precision images (drift is small next to its square)
    sampling_seconds: float | None  # None when the samples were given
    fid: Estimate | None = None  # when the run has a reference
    kid: Estimate | None = None


@dataclass
class SettingResult:
    name: str
    backend: str  # simulated | bnb
    wbits: int | None
    abits: int | None
    bnb_type: str | None
    layers: int  # Conv2d/Linear layers quantized (weights or inputs)
    weight_share: float  # share of the denoiser's parameters held in quantized form
    sample_mse: Estimate  # paired pixel MSE vs full precision, images in [-1, 1] (latent models: decoded)
    sample_psnr: Estimate  # dB, peak-to-peak 2
    relative_mse: float  # sample_mse / variance of the full-precision samples
    probe_loss: Estimate
    probe_loss_change: Estimate  # paired per-probe (quantized - full precision)
    sampling_seconds: float
    time_ratio: float | None  # sampling time / full-precision sampling time (same run)
    fid: Estimate | None = None  # when the run has a reference (scored by the quantize measure itself)
    kid: Estimate | None = None
    fid_change: Estimate | None = None  # paired with full precision (same seeds)
    # Per-sample MSE / full-precision variance (their mean is relative_mse), for a gate rule's paired difference
    # against a baseline drawn with the same seeds (core.stats.per_item).
    relative_mse_per_sample: list[float] | None = None
    _samples: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class QuantizeResult:
    sampler: str
    steps: int
    samples: int
    seed: int
    calibration: str
    calibration_data: str
    layer_policy: str
    layers_total: int
    probes: str
    full_precision: FullPrecisionResult
    settings: list[SettingResult]
    sensitivity_setting: str | None
    sensitivity_samples: int
    sensitivity_steps: int | None
    sensitivity_setting_drift: float | None  # the whole setting's drift on the scan's samples and steps
    sensitivity: list[LayerSensitivity]
    decoder: str | None = None  # --quantize-vae: what of the autoencoder was quantized, and its calibration
    lora: str | None = None  # with --lora: fused or adapter kept in full precision (LORA_NOTES)
    fid_label: str | None = None  # "FID" or "FD (<features>)" once scored
    fid_warning: str | None = None  # e.g. too few samples for a full-rank covariance
    _fp_samples: torch.Tensor | None = field(default=None, repr=False)

    def samples_of(self, name: str) -> torch.Tensor | None:
        """The first KEPT_IMAGES images of a setting's samples ('full-precision' for the reference), when kept
        (decoded for latent models; for grids)."""
        if name == "full-precision":
            return self._fp_samples
        return next((s._samples for s in self.settings if s.name == name), None)


def full_precision_samples(
    denoiser, config: QuantizeConfig, progress: Callable[[int], None] | None = None
) -> torch.Tensor:
    """The reference samples 0..samples-1 of config.seed, at full precision (shareable with other measures)."""
    from ...core.sampling import make_sampler, sample

    return sample(
        denoiser,
        make_sampler(denoiser.scheduler, config.sampler),
        config.steps,
        config.samples,
        config.seed,
        batch_size=config.batch_size,
        progress=progress,
    )


def measure_quantization(
    denoiser,
    bank: ProbeBank,
    config: QuantizeConfig | None = None,
    progress: Progress | None = None,
    fp_samples: torch.Tensor | None = None,
    fp_seconds: float | None = None,
    scorer=None,
) -> QuantizeResult:
    """Compare every setting of `config` with full precision. fp_samples: the reference samples
    0..N-1 of config.seed with config.sampler/steps, when already generated (else computed here);
    fp_seconds: how long they took, if known (for the time ratios). scorer (core.fd.Scorer): FD/FID
    and KID of full precision and of every setting, and each setting's paired FD change."""

    config = config or QuantizeConfig()
    check_config(config)
    handle = lora.attached(denoiser.net)
    if handle is None or config.lora_precision == "fused":  # fused: the base-shaped network, W + scale * B A
        result = _measure(denoiser, bank, config, progress, fp_samples, fp_seconds, scorer)
    else:
        with handle.unfused():  # the peft layers: base layers quantized, the adapter beside them in full precision
            result = _measure(denoiser, bank, config, progress, fp_samples, fp_seconds, scorer)
    if handle is not None:
        result.lora = LORA_NOTES[config.lora_precision]
    return result


LORA_NOTES = {
    "fused": "the LoRA fused into the weights (W + scale * B A), then quantized",
    "full": "the base weights quantized, the LoRA beside them in full precision (--lora-precision full)",
}


def _measure(denoiser, bank, config, progress, fp_samples, fp_seconds, scorer) -> QuantizeResult:
    from ...core.perturb import untouched
    from ...core.sampling import make_sampler, sample

    net = denoiser.net
    layers = quantizable_layers(net)
    if not layers:
        raise InputError(f"{type(net).__name__} has no Conv2d or Linear layer to quantize")
    scheduler = make_sampler(denoiser.scheduler, config.sampler)
    sens_setting = sensitivity_setting(config)
    plans = {
        s.name: layer_plan(layers, config.policy, s.wbits, s.abits) for s in config.settings if s.backend == "simulated"
    }
    for name, plan in plans.items():
        if not plan:
            raise InputError(f"setting {name} quantizes no layer under the layer policy ({config.policy.describe()})")
    decoder = None
    if config.quantize_vae:
        if denoiser.vae is None:
            raise OptionError("quantize_vae", "is for latent models: this model has no autoencoder")
        from .decoder import DecoderQuantization

        decoder = DecoderQuantization(denoiser, config.settings, config.policy)
    n = config.samples if fp_samples is None else len(fp_samples)
    n_sens = min(config.sensitivity_samples, n) if sens_setting else 0
    sens_steps = config.sensitivity_steps or config.steps
    own_sens_reference = sens_setting is not None and sens_steps != config.steps

    def tick(stage: str, total: int):
        return Counter(progress, stage, total).add

    with untouched(net):
        if fp_samples is None:
            t0 = time.perf_counter()
            fp_samples = full_precision_samples(denoiser, config, tick("full precision", n))
            fp_seconds = time.perf_counter() - t0
        fp_samples = fp_samples.float().cpu()
        fp_losses = bank_losses(denoiser, bank, config.batch_size)

        # Calibrate once for all simulated settings: the inputs of every layer any setting quantizes.
        ranges, calib_text = {}, "none (no simulated setting)"
        if plans:
            act_layers = sorted(
                {name for plan in plans.values() for name, (_, ab) in plan.items() if ab is not None},
                key=list(layers).index,
            )
            if act_layers:
                stats = collect_activations(
                    denoiser,
                    act_layers,
                    scheduler,
                    config.steps,
                    config.calib_samples,
                    calibration_seed(config.seed),
                    config.batch_size,
                    progress=tick("calibration", config.calib_samples),
                )
                widths = {ab for plan in plans.values() for _, ab in plan.values() if ab is not None}
                ranges = activation_ranges(stats, act_layers, config.calibration, widths, config.percentile)
                calib_text = f"{config.calibration} ranges from {stats.description}"
                if any(b >= HEADROOM_BITS for b in widths):
                    calib_text += (
                        f"; at {HEADROOM_BITS}+ bits the observed range x{HEADROOM:g} (headroom for unseen extremes)"
                    )
                zeros = [n for n in act_layers if not has_grid(stats.lo[n], stats.hi[n])]
                if zeros:
                    calib_text += (
                        f"; {len(zeros)} layer input(s) were identically zero in calibration and stay full "
                        f"precision ({', '.join(zeros[:3])})"
                    )
                if decoder is not None:
                    decoder.calibrate(
                        stats.samples,
                        config.calibration,
                        config.percentile,
                        config.batch_size,
                        calibration_seed(config.seed),
                    )
        weights = WeightCache(net)
        total_params = sum(p.numel() for p in net.parameters())

        bnb_layers = [
            k
            for k, v in layers.items()
            if v.kind == "Linear" and config.policy.bits_for(v.role, 8, None)[0] is not None
        ]

        def quantized(s: QuantSetting):
            """The setting's quantization, as a context to enter (once per batch of the pass below)."""
            if s.backend == "simulated":
                return simulated_quantization(net, plans[s.name], weights, ranges)
            return bnb_linear_swap(net, s.bnb_type, bnb_layers)

        measured = []  # (setting, layers, weight share, probe losses); its samples are made in the pass below
        for s in config.settings:
            with quantized(s) as swap:
                losses = bank_losses(denoiser, bank, config.batch_size)
            if s.backend == "simulated":
                plan = plans[s.name]
                share = sum(layers[k].weights for k, (wb, _) in plan.items() if wb is not None) / total_params
                count = len(plan)
            else:
                share, count = swap.weight_share, len(swap.layers)
            measured.append((s, count, share, losses))

        def batches_of(s: QuantSetting):
            ticks = tick(s.name, n)

            def make(rows: list[int]) -> torch.Tensor:  # this batch of seeds, sampled under the setting
                with quantized(s):
                    # split=False: the pass already gives each process its own batches
                    out = sample(
                        denoiser,
                        scheduler,
                        config.steps,
                        rows,
                        config.seed,
                        batch_size=config.batch_size,
                        progress=ticks,
                        split=False,
                    )
                return out.float().cpu()

            return make

        # Drift is measured on images (decoded for latent models), FD too: one pass, each batch decoded once.
        decoders = {FULL: denoiser.pixel_batch}
        for s, *_ in measured:
            decoders[s.name] = (
                (lambda z, name=s.name: decoder.decode(name, z, config.batch_size)) if decoder else denoiser.pixel_batch
            )
        keys = {}
        if scorer is not None:
            # a setting's samples are never whole, so never memoised (no other measure scores them)
            keys = {FULL: scorer.key(fp_samples), **{s.name: None for s, *_ in measured}}
        need_sens_ref = sens_setting is not None and not own_sens_reference
        done = paired_pass(
            fp_samples,
            {s.name: batches_of(s) for s, *_ in measured},
            decoders,
            config.batch_size,
            features=scorer.batch_features if scorer is not None else None,
            feature_sets=tuple(k for k, key in keys.items() if scorer.cached(key) is None)
            if scorer is not None
            else (),
            keep=max(KEPT_IMAGES if config.keep_samples else 0, n_sens if need_sens_ref else 0),
            pixel_model=denoiser.vae is None,
            progress=tick("drift" + (" and FD/FID" if scorer is not None else ""), n),
        )
        fp_var = done.fp_variance
        results = []
        sens_drift = None
        for s, count, share, losses in measured:
            seconds = done.seconds[s.name]
            mse, psnr = drift_estimates(done.mse[s.name])
            if sens_setting is not None and s.name == sens_setting.name and not own_sens_reference:
                sens_drift = float(done.mse[s.name][:n_sens].mean())  # the scan's own samples
            results.append(
                SettingResult(
                    s.name,
                    s.backend,
                    s.wbits,
                    s.abits,
                    s.bnb_type,
                    count,
                    share,
                    mse,
                    psnr,
                    mse.value / fp_var if fp_var > 0 else float("nan"),
                    mean_estimate(losses.numpy()),
                    mean_estimate((losses.double() - fp_losses.double()).numpy()),
                    # no ratio under --compile: full precision ran compiled (and paid the compilation), settings eager
                    seconds,
                    seconds / fp_seconds if fp_seconds and not getattr(denoiser.fast, "compile", False) else None,
                    relative_mse_per_sample=per_item(done.mse[s.name].double() / fp_var) if fp_var > 0 else None,
                    _samples=done.first_images[s.name][:KEPT_IMAGES] if config.keep_samples else None,
                )
            )
        fid_label = fid_warning = None
        base = None
        if scorer is not None:

            def scored(name: str):
                return scorer.cached(keys[name]) or scorer.from_features(
                    done.features[name], done.image_shape, keys[name]
                )

            base = scored(FULL)
            fid_label, fid_warning = base.label, base.warning
            for r in results:
                fd = scored(r.name)
                r.fid, r.kid, r.fid_change = fd.value, fd.kid, scorer.change(fd, base)

        sensitivity = []
        if sens_setting:
            sens_ref = done.first_images[FULL][:n_sens] if need_sens_ref else None
            if own_sens_reference:  # the scan runs fewer steps: its reference and whole-setting drift at those steps
                ref_tick = tick("layers: reference", 2 * n_sens)
                sens_ref = denoiser.pixels(
                    sample(
                        denoiser,
                        scheduler,
                        sens_steps,
                        n_sens,
                        config.seed,
                        batch_size=config.batch_size,
                        progress=ref_tick,
                    ),
                    config.batch_size,
                )
                with simulated_quantization(net, plans[sens_setting.name], weights, ranges):
                    whole = denoiser.pixels(
                        sample(
                            denoiser,
                            scheduler,
                            sens_steps,
                            n_sens,
                            config.seed,
                            batch_size=config.batch_size,
                            progress=ref_tick,
                        ),
                        config.batch_size,
                    )
                sens_drift = float(per_sample_mse(sens_ref, whole).mean())
            sensitivity = layer_sensitivity(
                denoiser,
                scheduler,
                sens_steps,
                config.seed,
                sens_ref,
                layers,
                plans[sens_setting.name],
                weights,
                ranges,
                config.batch_size,
                sens_drift,
                tick(f"layers ({sens_setting.name})", len(plans[sens_setting.name]) * n_sens),
            )

    return QuantizeResult(
        sampler=config.sampler,
        steps=config.steps,
        samples=n,
        seed=config.seed,
        calibration=config.calibration if plans else "none",
        calibration_data=calib_text,
        layer_policy=config.policy.describe(),
        layers_total=len(layers),
        probes=f"{len(bank)} probes; {bank.source}",
        full_precision=FullPrecisionResult(
            mean_estimate(fp_losses.numpy()),
            fp_var**0.5,
            fp_seconds,
            base.value if base else None,
            base.kid if base else None,
        ),
        settings=results,
        sensitivity_setting=sens_setting.name if sens_setting else None,
        sensitivity_samples=n_sens,
        sensitivity_steps=sens_steps if sens_setting else None,
        sensitivity_setting_drift=sens_drift,
        sensitivity=sensitivity,
        decoder=(
            f"vae.decoder: {len(decoder.layers)} Conv2d/Linear layers ({decoder.weight_count:,} weights) quantized "
            f"with each simulated setting; activations: {decoder.description}"
        )
        if decoder
        else None,
        fid_label=fid_label,
        fid_warning=fid_warning,
        _fp_samples=done.first_images[FULL][:KEPT_IMAGES] if config.keep_samples else None,
    )
