"""What `measure_quantization` computes for a config (core.work), read off measure.py.

No parameter-sized vectors: simulated settings swap quantized weights in (cached up to
simulated.CACHE_BYTES, the rest made per call) and bitsandbytes swaps in smaller modules."""

from __future__ import annotations

from ...core.work import RunShape, Work
from .config import QuantizeConfig, sensitivity_setting
from .simulated import layer_plan, quantizable_layers


def work(config: QuantizeConfig, run: RunShape, net) -> list[Work]:
    c = config
    n, bs, g = c.samples, c.batch_size, run.guided
    out = []
    if any(s.backend == "simulated" and s.abits is not None for s in c.settings):
        out.append(
            Work(
                "quantize: calibration",
                forwards=c.calib_samples * run.evals(c.steps),
                batch=min(bs, c.calib_samples),
                guided=g,
            )
        )
    k = run.evals(c.steps)
    own_fp = not (n == run.samples and c.steps == run.steps)  # else it compares against the shared samples
    sets = len(c.settings) + 1
    out.append(
        Work(
            "quantize: settings",
            forwards=len(c.settings) * (run.probes + n * k) + (n * k if own_fp else 0),
            decodes=n * sets,
            features=n * sets if run.fd else 0,
            batch=min(bs, n),
            guided=g,
            note=f"{len(c.settings)} settings x {n} samples x {c.steps} steps, each batch decoded once",
        )
    )
    sens = sensitivity_setting(c)
    if sens is not None:
        scan = min(c.sensitivity_samples, n)
        steps = c.sensitivity_steps or c.steps
        layers = len(layer_plan(quantizable_layers(net), c.policy, sens.wbits, sens.abits))
        own_ref = steps != c.steps
        out.append(
            Work(
                f"quantize: per-layer scan ({sens.name})",
                forwards=(layers + (2 if own_ref else 0)) * scan * run.evals(steps),
                decodes=(layers + (2 if own_ref else 0)) * scan,
                batch=min(bs, scan),
                guided=g,
                note=f"{layers} layers x {scan} samples x {steps} steps",
            )
        )
    return out
