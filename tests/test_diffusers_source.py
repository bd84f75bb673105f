"""diffusers' source, read without importing it (core.diffusers_source), says what the imported classes say.

Each answer the source gives is compared with the imported class; where the source gives none (None),
core.class_facts imports diffusers and asks it, which is checked too.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import diffusers
import pytest

from flatcheck.core import class_facts
from flatcheck.core import diffusers_source as source
from flatcheck.errors import InputError
from flatcheck.families import supported_classes

from . import families

SCHEDULERS = sorted(
    n for n, (key, _) in (source.exported_names() or {}).items() if key == "schedulers" and n.endswith("Scheduler")
)
PIPELINES = sorted(set(families.PIPELINE_CLASS.values()) | {"PixArtSigmaPipeline", "StableDiffusion3Pipeline"})
MODELS = sorted(set(supported_classes()) | {"AutoencoderKL", "VQModel", "UNet1DModel"})


def signature_defaults(cls) -> dict:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: source.REQUIRED if p.default is p.empty else p.default for p in params}


def test_the_lazy_import_table_is_read():
    table = source.exported_names()
    assert table is not None and len(SCHEDULERS) >= 30
    for name in ("DDPMScheduler", "UNet2DConditionModel", "StableDiffusionPipeline", "FluxPipeline", "AutoencoderKL"):
        assert name in table and hasattr(diffusers, name)
    assert source.find_class("NoSuchThing") is None and source.is_exported("NoSuchThing") is False


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_facts_match_the_imported_class(name):
    cls = getattr(diffusers, name)
    found = source.find_class(name)
    if found is None:  # gated behind a library flatcheck does not depend on: class_facts imports it
        return
    assert source.derives_from(found, "SchedulerMixin") in (issubclass(cls, diffusers.SchedulerMixin), None)
    args = source.init_arguments(found)
    if args is not None:
        assert args == signature_defaults(cls)
    alphas = source.sets_attribute_in_init(found, "alphas_cumprod")
    if alphas is not None:
        try:
            instance = cls()
        except Exception:  # a schedule that needs arguments or a library; nothing to compare
            return
        assert alphas == hasattr(instance, "alphas_cumprod")


def test_the_usual_schedulers_are_answered_from_source():
    for name in (
        "DDPMScheduler",
        "DDIMScheduler",
        "PNDMScheduler",
        "EulerDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "FlowMatchEulerDiscreteScheduler",
    ):
        found = source.find_class(name)
        assert found is not None and source.derives_from(found, "SchedulerMixin") is True
        assert source.init_arguments(found) is not None
        assert source.sets_attribute_in_init(found, "alphas_cumprod") is (not name.startswith("FlowMatch"))


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_facts_match_the_imported_class(name):
    from flatcheck.core.conditioning import pipeline_default

    found = source.find_class(name)
    assert found is not None and source.derives_from(found, "DiffusionPipeline") is True
    for argument in ("guidance_scale", "max_sequence_length", "num_inference_steps"):
        answer = source.argument_default(found, "__call__", argument)
        assert answer is not None, argument
        assert answer[1] == pipeline_default(name, argument)


@pytest.mark.parametrize("name", MODELS)
def test_model_facts_match_the_imported_class(name):
    cls = getattr(diffusers, name)
    found = source.find_class(name)
    assert found is not None and source.derives_from(found, "ModelMixin") is True
    assert source.derives_from(found, "SchedulerMixin") is False
    assert source.init_arguments(found) == signature_defaults(cls)


def test_what_is_not_a_diffusers_class_of_the_base_is_refused(tmp_path):
    where = tmp_path / "config.json"
    with pytest.raises(InputError, match="unknown class 'UNetFromNowhere' \\(not a diffusers ModelMixin\\)"):
        class_facts.check_class("UNetFromNowhere", "ModelMixin", where)
    with pytest.raises(InputError, match="unknown class 'DDPMScheduler' \\(not a diffusers ModelMixin\\)"):
        class_facts.check_class("DDPMScheduler", "ModelMixin", where)
    with pytest.raises(InputError, match="unknown class 'KarrasDiffusionSchedulers'"):  # an Enum beside the schedulers
        class_facts.check_class("KarrasDiffusionSchedulers", "SchedulerMixin", where)
    with pytest.raises(InputError, match="custom code is never run"):
        class_facts.check_class("my.module", "ModelMixin", where)


def test_without_the_source_the_answers_come_from_diffusers(monkeypatch, tmp_path):
    monkeypatch.setattr(source, "find_class", lambda name: None)
    monkeypatch.setattr(source, "is_exported", lambda name: None)
    class_facts.check_class("UNet2DModel", "ModelMixin", tmp_path)
    with pytest.raises(InputError, match="unknown class 'DDPMScheduler'"):
        class_facts.check_class("DDPMScheduler", "ModelMixin", tmp_path)
    held = class_facts.config_with_defaults("DDPMScheduler", {"beta_schedule": "squaredcos_cap_v2", "junk": 1})
    built = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2").config
    assert held == {
        **{k: v for k, v in built.items() if not k.startswith("_")},
        "junk": 1,
    }  # kept, as diffusers keeps it
    assert class_facts.has_alphas_cumprod("DDIMScheduler", {}) is True
    assert class_facts.has_alphas_cumprod("FlowMatchEulerDiscreteScheduler", {}) is False
    assert class_facts.call_default("StableDiffusionPipeline", "guidance_scale") == 7.5


def test_config_with_defaults_is_what_from_config_holds():
    written = {
        "_class_name": "DDIMScheduler",
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 500,
        "not_an_argument": 3,
    }
    held = class_facts.config_with_defaults("DDIMScheduler", written)
    instance = diffusers.DDIMScheduler.from_config(written)
    assert {k: v for k, v in held.items() if not k.startswith("_")} == {
        k: v for k, v in instance.config.items() if not k.startswith("_")
    }


def test_reading_the_source_imports_no_torch():
    code = (
        "import sys; from flatcheck.core import class_facts as f; "
        "f.check_class('FluxPipeline', 'DiffusionPipeline', 'x'); "
        "assert f.config_with_defaults('FluxTransformer2DModel', {})['num_layers'] == 19; "
        "assert f.has_alphas_cumprod('PNDMScheduler', {}) and f.call_default('FluxPipeline', 'guidance_scale') == 3.5; "
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
