"""Feature networks for FD/FID/KID, all run through torch-fidelity's feature-extractor registry.

--features   torch-fidelity extractor         label             weights (--fid-weights)
inception    inception-v3-compat (.pth)       FID               torch-fidelity's .pth, or the TorchScript
             inception-v3-torchscript (.pt)                     inception-2015-12-05.pt (clean-fid, NVIDIA)
digits-cnn   digits-cnn (registered here)     FD (digits-cnn)   flatcheck/assets (bundled), or a .safetensors
patches-cnn  patches-cnn (registered here)    FD (patches-cnn)  flatcheck/assets (bundled), or a .safetensors
clip         clip-vit-b-32                    FD (clip)         OpenAI's TorchScript ViT-B-32.pt
dinov2       dinov2-vit-l-14                  FD (dinov2)       torch.hub only (no local file)

Only Inception features give a number called FID; every other feature space is labelled
FD (<name>) so nobody compares it with published FIDs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ..files import file_sha256, forget_file_hashes
from ..option_values import FEATURES

INCEPTION_PTH_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_TS_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
_TF_NAME = {
    "digits-cnn": "digits-cnn",
    "patches-cnn": "patches-cnn",
    "clip": "clip-vit-b-32",
    "dinov2": "dinov2-vit-l-14",
}
_TS_INCEPTION = "inception-v3-torchscript"
_SMALL_CNN = ("digits-cnn", "patches-cnn")  # our small classifiers, weights bundled in flatcheck/assets


def label_for(features: str) -> str:
    return "FID" if features == "inception" else f"FD ({features})"


# ------------------------------------------------------------------ extractors registered with torch-fidelity
def _registered_classes():
    """Define and register our torch-fidelity extractors once (torch-fidelity imports torchvision: keep it lazy)."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if "digits-cnn" in FEATURE_EXTRACTORS_REGISTRY:
        return

    def small_cnn_extractor(mod, loader: str, channels: int, size: int):
        """A torch-fidelity extractor for one of our small classifiers (module digits_cnn or patches_cnn):
        uint8 [N, C, H, W] -> its features ("feat") or its logits."""

        class FeatureExtractorSmallCNN(FeatureExtractorBase):
            def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
                super().__init__(name, features_list)
                self.net = getattr(mod, loader)(feature_extractor_weights_path)

            def forward(self, x):
                f = self.net.features(mod.prepare(x))
                out = {"feat": f, "logits": self.net.logits_from_features(f)}
                return tuple(out[k] for k in self.features_list)

            @staticmethod
            def get_provided_features_list():
                return ("feat", "logits")

            @staticmethod
            def get_default_feature_layer_for_metric(metric):
                return {"isc": "logits", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

            @staticmethod
            def can_be_compiled():
                return False

            @staticmethod
            def get_dummy_input_for_compile():
                return torch.zeros(1, channels, size, size, dtype=torch.uint8)

        return FeatureExtractorSmallCNN

    class FeatureExtractorInceptionTorchScript(FeatureExtractorBase):
        """The TorchScript Inception of StyleGAN2-ADA/clean-fid:
        base(x in [0, 255], return_features=True) -> [N, 2048]."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None:
                raise InputError("the TorchScript Inception needs --fid-weights inception-2015-12-05.pt")
            self.model = torch.jit.load(str(feature_extractor_weights_path), map_location="cpu").eval()

        def forward(self, x):
            f = self.model(x.float(), return_features=True).reshape(x.shape[0], -1)
            return (f.float(),)

        @staticmethod
        def get_provided_features_list():
            return ("2048",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "2048"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 299, 299, dtype=torch.uint8)

    from . import digits_cnn, patches_cnn

    register_feature_extractor("digits-cnn", small_cnn_extractor(digits_cnn, "load_digits_cnn", 1, 16))
    register_feature_extractor("patches-cnn", small_cnn_extractor(patches_cnn, "load_patches_cnn", 3, 32))
    register_feature_extractor(_TS_INCEPTION, FeatureExtractorInceptionTorchScript)


# ------------------------------------------------------------------ loading
@dataclass
class Extractor:
    """A loaded feature network and what identifies its feature space (for the statistics cache)."""

    features: str  # --features name
    tf_name: str  # torch-fidelity registry name
    layer: str
    label: str
    fingerprint: str  # extractor + layer + weights content: the cache key's feature-space part
    module: torch.nn.Module = field(repr=False)
    device: torch.device = field(repr=False)
    rgb: bool = True  # torch-fidelity's ImageNet networks want 3 channels
    passes: int = (
        0  # feature passes run (one per image set: an extract call or a streamed set): lets tests see cache hits
    )

    def extract(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """uint8 [N, C, H, W] -> float64 features [N, D], through torch-fidelity's batched loop (no worker processes).

        For images already in memory (a reference array); an image folder goes through `extract_stream`,
        and samples are scored batch by batch (core.fd.score.stream_features), so neither is held whole."""
        self.passes += 1
        return self._extract(images, batch_size)

    def extract_stream(self, chunks, batch_size: int = 64) -> np.ndarray:
        """`extract` over an iterable of uint8 image chunks, one pass: with every chunk but the last a
        multiple of batch_size long, the batches (and so the features) are those of one `extract` of all."""
        self.passes += 1
        feats = [self._extract(chunk, batch_size) for chunk in chunks]
        return np.concatenate(feats) if feats else np.zeros((0, 0))

    def _extract(self, images: torch.Tensor, batch_size: int) -> np.ndarray:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 [N, C, H, W] images, got {images.dtype} {tuple(images.shape)}")
        from .. import dist

        images = images.contiguous()

        def run(rows: list[int]) -> torch.Tensor:
            return self.extract_local(images[rows[0] : rows[-1] + 1], batch_size)

        # Several processes: each extracts its share of blocks of images, all get every feature (core.dist).
        block = batch_size * 4 if dist.world() > 1 else len(images)
        chunks = [list(range(s, min(s + block, len(images)))) for s in range(0, len(images), max(block, 1))]
        return torch.cat(dist.split_batches(run, chunks)).double().numpy() if chunks else np.zeros((0, 0))

    def extract_local(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """uint8 [n, C, H, W] -> features [n, D] (CPU, the network's dtype: float32, half the bytes of the
        float64 the statistics use, and exactly convertible) in this process alone, batches of batch_size.
        Not counted in `passes`: the caller counts one pass per image set."""
        from torch_fidelity.utils import get_featuresdict_from_dataset

        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 [N, C, H, W] images, got {images.dtype} {tuple(images.shape)}")
        if self.rgb and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        cuda = self.device.type == "cuda"
        with torch.cuda.device(self.device) if cuda else _nullcontext():
            feats = get_featuresdict_from_dataset(
                _Images(images), self.module, batch_size, cuda, save_cpu_ram=True, verbose=False
            )
        return feats[self.layer].cpu()


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _Images(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


_LOADED: dict[tuple, Extractor] = {}


def load_extractor(features: str, weights: str | Path | None = None, device: torch.device | str = "cpu") -> Extractor:
    """The feature network for --features (memoised per run); InputError with one line on anything missing."""
    from torch_fidelity.utils import create_feature_extractor

    key_name = (features or "").strip().lower()
    if key_name not in FEATURES:
        raise InputError(f"unknown --features '{features}' (choose from: {', '.join(FEATURES)})")
    device = torch.device(device)
    if device.type == "mps":  # torch-fidelity moves batches with .cuda() or not at all
        device = torch.device("cpu")
    wpath = _check_weights_path(weights)
    memo = (key_name, str(wpath.resolve()) if wpath else None, str(device))
    if memo in _LOADED:
        return _LOADED[memo]
    _registered_classes()

    tf_name, fmt = _TF_NAME.get(key_name, "inception-v3-compat"), None
    if key_name == "inception":
        wpath, fmt = _inception_weights(wpath)
        if fmt == "torchscript":
            tf_name = _TS_INCEPTION
    elif key_name == "dinov2" and wpath is not None:
        raise InputError(
            "--features dinov2 takes no --fid-weights: torch-fidelity loads DINOv2 through torch.hub (cache it there)"
        )
    elif key_name in _SMALL_CNN and wpath is not None and wpath.suffix != ".safetensors":
        raise InputError(f"--fid-weights for {key_name} must be a .safetensors file (got '{wpath.name}')")

    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    layer = FEATURE_EXTRACTORS_REGISTRY[tf_name].get_default_feature_layer_for_metric("fid")
    # torch.hub announces a download on stderr before it fails offline; hold that back so a
    # failure is one line, and pass it on when the download worked.
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            module = create_feature_extractor(
                tf_name,
                [layer],
                cuda=False,
                verbose=False,
                feature_extractor_weights_path=str(wpath) if wpath else None,
            )
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - offline downloads and bad files surface as assorted errors
        raise _load_error(key_name, wpath, exc) from None
    sys.stderr.write(held.getvalue())
    module.to(device)

    if key_name in _SMALL_CNN and wpath is None:
        from . import digits_cnn, patches_cnn

        weights_id = file_sha256({"digits-cnn": digits_cnn, "patches-cnn": patches_cnn}[key_name].weights_path())
    elif wpath is not None:
        weights_id = file_sha256(wpath)
    else:  # downloaded by torch-fidelity / torch.hub: the URL pins the content
        weights_id = tf_name
    fingerprint = hashlib.sha256(f"{tf_name}|{layer}|{weights_id}".encode()).hexdigest()[:16]
    ex = Extractor(
        features=key_name,
        tf_name=tf_name,
        layer=layer,
        label=label_for(key_name),
        fingerprint=fingerprint,
        module=module,
        device=device,
        rgb=key_name != "digits-cnn",
    )
    _LOADED[memo] = ex
    return ex


def _check_weights_path(weights) -> Path | None:
    if weights is None or str(weights) == "":
        return None
    p = Path(weights).expanduser()
    if not p.is_file():
        raise InputError(f"--fid-weights '{weights}' is not a file")
    return p


def _inception_weights(wpath: Path | None) -> tuple[Path | None, str]:
    """Decide the Inception weight format: torch-fidelity's state-dict .pth, or a TorchScript archive."""
    if wpath is None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_PTH_URL.rsplit("/", 1)[-1]
        return (cached, "pth") if cached.is_file() else (None, "download")
    if zipfile.is_zipfile(wpath):
        with zipfile.ZipFile(wpath) as z:
            # TorchScript archives carry code/ (and constants.pkl); torch.save zips only data.pkl + data/
            if any(n.split("/", 2)[1:2] == ["code"] for n in z.namelist()):
                return wpath, "torchscript"
    try:  # weights_only: a state dict of tensors loads, a pickle that runs code is refused
        state = torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"--fid-weights '{wpath}' is neither torch-fidelity's Inception .pth nor a TorchScript Inception (.pt): "
            f"{str(exc).splitlines()[0][:160]}"
        ) from None
    if not isinstance(state, dict) or "Conv2d_1a_3x3.conv.weight" not in state:
        raise InputError(
            f"--fid-weights '{wpath}' is not torch-fidelity's Inception state dict (no Conv2d_1a_3x3 weights)"
        )
    return wpath, "pth"


def _load_error(features: str, wpath: Path | None, exc: Exception) -> InputError:
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if features == "inception" and wpath is None:
        return InputError(
            f"Inception weights are not available offline ({first}): download {INCEPTION_PTH_URL} "
            f"(or the TorchScript {INCEPTION_TS_URL}) and pass it with --fid-weights PATH"
        )
    if features == "clip" and wpath is None:
        return InputError(
            f"CLIP weights are not available offline ({first}): pass OpenAI's ViT-B-32.pt with --fid-weights PATH"
        )
    if features == "dinov2":
        return InputError(
            f"DINOv2 loads through torch.hub from github.com/facebookresearch/dinov2 and could not ({first}); "
            "run once online to fill the torch.hub cache, or use --features inception/digits-cnn"
        )
    what = "its download" if wpath is None else f"file '{wpath}'"
    return InputError(f"cannot load {features} weights from {what}: {first}")


def clear_memo() -> None:
    """Forget loaded extractors (tests; a long-lived process that changes weight files)."""
    _LOADED.clear()
    forget_file_hashes()
