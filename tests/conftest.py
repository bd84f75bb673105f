"""Fixtures: tiny diffusers models built from configs in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from flatcheck.cli import run

TINY_UNET = dict(
    sample_size=8,
    in_channels=1,
    out_channels=1,
    layers_per_block=1,
    block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
    attention_head_dim=8,
)


def make_unet(seed: int = 0, **overrides):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**{**TINY_UNET, **overrides}).eval()


def make_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type)


# The modules holding the suite's longest tests (tens of seconds each, measured on a 2-core runner), run first:
# under `--dist worksteal` (pyproject) a worker that runs out of tests takes half of another's queue from its end,
# so with the long ones at the front the run ends on short tests instead of one worker finishing a long one alone.
# Whole modules move, in their own order, so module-scoped fixtures are still built once per worker.
SLOW_MODULES = (
    "test_distributed.py",
    "test_zoo.py",
    "test_measure_profiles.py",
    "test_memory_bounds.py",
    "test_rank.py",
    "test_fuzz.py",
    "test_gate_ci.py",
    "test_plan_cli.py",
    "test_families.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # Tiny models: one thread is as fast, and two threads on a busy 2-core machine stalled
    # 10-30x here (oversubscription). The CLI's own processes keep torch's default.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A DDPMPipeline folder with a tiny UNet2DModel (safetensors)."""
    from diffusers import DDPMPipeline

    folder = tmp_path_factory.mktemp("tiny") / "pipe"
    DDPMPipeline(unet=make_unet(), scheduler=make_scheduler()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """family name -> its tiny pipeline folder (tests/families.py), built once per session on first use and
    shared by every test module (read it, never write into it: copy it first)."""
    from . import families

    root = tmp_path_factory.mktemp("families")
    built: dict = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = families.build(name, root)
        return built[name]

    return get


@pytest.fixture
def pipeline_copy(tiny_pipeline, tmp_path) -> Path:
    """A private copy of the tiny pipeline that a test may break."""
    dst = tmp_path / "pipe"
    shutil.copytree(tiny_pipeline, dst)
    return dst


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def call(*args: str):
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return call
