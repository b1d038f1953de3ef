"""SAM 2 prompting backend through the ``sam2`` package (SAM 2.1 tiny / small / base+ / large).

The model is built with ``sam2.build_sam.build_sam2(config, ckpt_path)``, the package's own
loading code, once per prompter. Image embeddings go through an optional on-disk
:class:`~napari_instseg.core.prompting.cache.EmbeddingCache`.

Restoring an embedding sets ``SAM2ImagePredictor``'s private ``_features``, ``_orig_hw``,
``_is_image_set`` and ``_is_batch``; sam2 is pinned to 1.1.0 and a test checks that restored
embeddings give the same masks as a fresh encoding.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coords import points_yx_to_xy
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.prompting.base import Candidates, ImageKey, Prompt, as_rgb_uint8
from napari_instseg.core.prompting.cache import EmbeddingCache, EmbeddingMeta, Features
from napari_instseg.core.prompting.checkpoints import CheckpointError, find_checkpoint, model_spec

__all__ = [
    "HIDE_TRITON_ENV",
    "MissingExtraError",
    "Sam2Prompter",
    "auto_device",
    "avoid_llvm_clash",
    "diagnose_checkpoint",
    "load_sam2_model",
    "model_construction",
    "require_sam2",
    "sam2_available",
]

logger = logging.getLogger(__name__)

HIDE_TRITON_ENV = "NAPARI_INSTSEG_HIDE_TRITON"
"""``0``: never hide triton from torch; ``1``: always; unset: when Mesa's libLLVM is loaded."""


class MissingExtraError(InstsegError, ImportError):
    """An optional extra (here ``napari-instseg[sam2]``) is needed but not installed."""


PREPROCESSING = "sam2-transforms:resize-1024x1024,imagenet-norm,rgb-uint8"
_LOW_RES = 256  # SAM's mask-input (and low-res logits) size


def avoid_llvm_clash(*, force: bool = False) -> bool:
    """Keep torch from loading triton when a Mesa OpenGL driver's LLVM is already loaded.

    napari's canvas under software or Mesa OpenGL (llvmpipe, radeonsi; also Xvfb) loads
    ``libLLVM``; triton's ``libtriton`` carries its own LLVM, and loading both in one process
    crashes it (a segmentation fault when torchvision imports ``torch._dynamo``). SAM 2 image
    inference does not use triton, so it is hidden from torch in that case (or always with
    ``force``, for a process that will open an OpenGL canvas later). Returns True when it was
    hidden.

    This is a process-wide change (an entry ``sys.modules["triton"] = None``), so it is made
    explicitly and only where a SAM 2 model is built (:func:`load_sam2_model`, the predictor,
    the Prompt widget's import warm-up), never on import. The environment variable
    :data:`HIDE_TRITON_ENV` decides: ``0`` never hides triton, ``1`` always does, unset detects
    the clash.
    """
    setting = os.environ.get(HIDE_TRITON_ENV, "").strip()
    if "triton" in sys.modules or setting == "0":
        return False
    if force or setting == "1":
        sys.modules["triton"] = None  # type: ignore[assignment]
        return True
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: no Mesa LLVM clash to avoid
        return False
    if "libLLVM" not in maps:
        return False
    logger.info("Mesa's libLLVM is loaded (OpenGL); hiding triton from torch to avoid an LLVM clash")
    sys.modules["triton"] = None  # type: ignore[assignment]  # makes `import triton` raise ImportError
    return True


_CONSTRUCTION_LOCK = threading.RLock()  # re-entrant: a predictor's construction loads its model


@contextmanager
def model_construction() -> Iterator[None]:
    """Hold the process-wide lock under which SAM 2 models, predictors and generators are built.

    Building them is not thread-safe: ``build_sam2`` composes hydra's global configuration, and
    ``SAM2ImagePredictor`` (also built inside ``SAM2AutomaticMaskGenerator``) compiles its
    transforms with ``torch.jit.script``, whose class registry two threads corrupt when they
    script at once (``RuntimeError: Can't redefine method: forward on class ...Resize``). Worker
    threads that each build their own model (``prelabel-slide --workers N``) so take turns to
    build; inference runs in parallel afterwards. ``torch.jit.script``'s FutureWarning is
    silenced inside.
    """
    with _CONSTRUCTION_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


def sam2_available() -> bool:
    """True when the ``sam2`` extra (torch and sam2) is installed; imports neither."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "sam2"))


def require_sam2() -> None:
    """Check that the ``sam2`` extra is installed before SAM 2 is used.

    Raises
    ------
    MissingExtraError
        When torch or sam2 cannot be imported; the message names the extra to install.
    """
    if not sam2_available():
        raise MissingExtraError(
            "SAM 2 needs torch and sam2, which are not installed. Install the extra: "
            "pip install 'napari-instseg[sam2]' (torch first, see the README), or use the "
            "'classic' backend, which needs no model."
        )


def auto_device() -> str:
    """The best available torch device: cuda, then mps, then cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_sam2_model(size: str, checkpoint: str | os.PathLike[str], device: str) -> Any:
    """Build SAM 2.1 of ``size`` from ``checkpoint`` with sam2's ``build_sam2``.

    Raises
    ------
    CheckpointError
        For a file that is not a weights-only torch checkpoint (a pickled object is refused),
        lacks the ``model`` entry, or whose keys do not match the model (naming a few).
    """
    avoid_llvm_clash()
    from sam2.build_sam import build_sam2

    spec = model_spec(size)
    path = Path(checkpoint)
    try:
        with model_construction():
            return build_sam2(spec.config, ckpt_path=str(path), device=device)
    except Exception as exc:  # torch raises several types; all mean "not this checkpoint"
        raise CheckpointError(diagnose_checkpoint(path, spec.config, exc)) from exc


def diagnose_checkpoint(path: Path, config: str, exc: Exception) -> str:
    """Explain why ``path`` could not be loaded into the model of ``config``."""
    import torch

    head = f"Cannot load SAM 2 checkpoint {path} for {config}"
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as load_exc:
        return (
            f"{head}: it is not a weights-only torch checkpoint ({type(load_exc).__name__}: "
            f"{str(load_exc).splitlines()[0] if str(load_exc) else ''}). Pickled objects are "
            "refused for safety; save one with torch.save({'model': state_dict}, path)."
        )
    if not isinstance(content, dict) or "model" not in content:
        keys = list(content)[:5] if isinstance(content, dict) else type(content).__name__
        return f"{head}: expected a dict with a 'model' state dict, found {keys}."
    from sam2.build_sam import build_sam2

    with model_construction():
        expected = set(build_sam2(config, ckpt_path=None, device="cpu").state_dict())
    given = set(content["model"])
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        return (
            f"{head}: {len(missing)} missing key(s) (e.g. {missing[:3]}) and {len(unexpected)} "
            f"unexpected key(s) (e.g. {unexpected[:3]}). Is it a checkpoint of another model size?"
        )
    return f"{head}: {type(exc).__name__}: {exc}"


class Sam2Prompter:
    """SAM 2.1 image prompting with an optional embedding cache.

    Parameters
    ----------
    size : {'tiny', 'small', 'base_plus', 'large'}
        Model size.
    checkpoint : path-like, optional
        Checkpoint file; None looks in ``$NAPARI_INSTSEG_SAM2_CHECKPOINT`` and the user cache.
    device : str, optional
        Torch device; None picks cuda, mps or cpu.
    cache : EmbeddingCache, optional
        Where embeddings are stored and looked up.
    cache_dtype : str
        Precision of cached embeddings (``float16`` halves their size; 99.99 % of mask pixels
        agree with float32).
    on_mismatch : {'error', 'recompute'}
        What to do with a cache entry made by another model or preprocessing.
    """

    name = "sam2"

    def __init__(
        self,
        size: str = "tiny",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        cache: EmbeddingCache | None = None,
        cache_dtype: str = "float16",
        on_mismatch: str = "error",
    ) -> None:
        require_sam2()
        if on_mismatch not in ("error", "recompute"):
            raise ValueError(f"on_mismatch must be 'error' or 'recompute', got {on_mismatch!r}.")
        self.size = model_spec(size).size
        self.checkpoint = find_checkpoint(size, checkpoint)
        self.device = device or auto_device()
        self.cache = cache
        self.cache_dtype = cache_dtype
        self.on_mismatch = on_mismatch
        self._predictor: Any = None
        self._shape_yx: tuple[int, int] | None = None
        self.last_from_cache = False
        self.last_set_image_s = 0.0
        self.current_key: ImageKey | None = None  # key of the image the predictor holds

    @property
    def model_id(self) -> str:
        """A readable id of the model (size and config)."""
        return f"sam2.1-hiera-{self.size}"

    @property
    def predictor(self) -> Any:
        """The ``SAM2ImagePredictor``, built on first use and kept for the prompter's life."""
        if self._predictor is None:
            avoid_llvm_clash()
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            with model_construction():  # one thread at a time (torch.jit.script is not thread-safe)
                model = load_sam2_model(self.size, self.checkpoint, self.device)
                self._predictor = SAM2ImagePredictor(model)
        return self._predictor

    def load(self) -> None:
        """Build the model now (slow; off the UI thread) rather than at the first image."""
        self.predictor  # noqa: B018 - the property builds and keeps it

    def meta(self, shape_yx: tuple[int, int]) -> EmbeddingMeta:
        """What a cached embedding of an image of ``shape_yx`` must match."""
        import sam2

        stat = self.checkpoint.stat()
        return EmbeddingMeta(
            model=f"{self.model_id} ({model_spec(self.size).config})",
            checkpoint=f"{self.checkpoint.name}:{stat.st_size}:{stat.st_mtime_ns}",
            sam2_version=getattr(sam2, "__version__", "1.1.0"),
            preprocessing=PREPROCESSING,
            dtype=self.cache_dtype,
            orig_hw=(int(shape_yx[0]), int(shape_yx[1])),
        )

    def set_image(self, image: NDArray[np.generic], key: ImageKey | None = None) -> None:
        """Encode ``image`` (grey or RGB, (y, x[, c])), or restore its embedding from the cache."""
        from napari_instseg.core.prompting.cache import EmbeddingCacheMismatch

        start = time.perf_counter()
        shape_yx = (int(image.shape[0]), int(image.shape[1]))
        features = None
        if self.cache is not None and key is not None:
            try:
                features = self.cache.load(key, self.meta(shape_yx))
            except EmbeddingCacheMismatch:
                if self.on_mismatch == "error":
                    raise
                logger.warning("embedding cache entry for %s does not match; recomputing", key.identity)
        if features is not None:
            self.restore(features, shape_yx)
            self.last_from_cache = True
        else:
            self.encode(image)
            self.last_from_cache = False
            if self.cache is not None and key is not None:
                self.cache.save(key, self.meta(shape_yx), self.features())
        self._shape_yx = shape_yx
        self.current_key = key
        self.last_set_image_s = time.perf_counter() - start

    def encode(self, image: NDArray[np.generic]) -> None:
        """Run the image encoder (the slow part: seconds on a CPU)."""
        import torch

        self.current_key = None
        with torch.inference_mode():
            self.predictor.set_image(as_rgb_uint8(image))
        self._shape_yx = (int(image.shape[0]), int(image.shape[1]))

    def features(self) -> Features:
        """The current image's features as numpy arrays."""
        feats = self.predictor._features
        arrays = {
            "image_embed": feats["image_embed"],
            "high_res_feats_0": feats["high_res_feats"][0],
            "high_res_feats_1": feats["high_res_feats"][1],
        }
        return Features({k: v.detach().float().cpu().numpy() for k, v in arrays.items()})

    def restore(self, features: Features, shape_yx: tuple[int, int]) -> None:
        """Load cached features into the predictor, as ``set_image`` would have left it."""
        import torch

        predictor = self.predictor
        predictor.reset_predictor()
        self.current_key = None

        def tensor(name: str) -> Any:
            return torch.as_tensor(np.asarray(features.arrays[name], dtype=np.float32), device=predictor.device)

        predictor._features = {
            "image_embed": tensor("image_embed"),
            "high_res_feats": [tensor("high_res_feats_0"), tensor("high_res_feats_1")],
        }
        predictor._orig_hw = [tuple(shape_yx)]
        predictor._is_image_set = True
        predictor._is_batch = False
        self._shape_yx = (int(shape_yx[0]), int(shape_yx[1]))

    def predict(self, prompt: Prompt, *, multimask: bool = True) -> Candidates:
        """Predict candidate masks (three with ``multimask``) for ``prompt``, best score first."""
        import torch

        if self._shape_yx is None:
            raise RuntimeError("Call set_image() before predict().")
        prompt.check_inside(self._shape_yx)
        kwargs: dict[str, Any] = {"multimask_output": multimask}
        if len(prompt.points_yx):
            kwargs["point_coords"] = points_yx_to_xy(prompt.points_yx)
            kwargs["point_labels"] = np.array(prompt.point_labels)  # writable: torch warns on read-only arrays
        if prompt.box_xyxy is not None:
            kwargs["box"] = np.asarray(prompt.box_xyxy, dtype=np.float32)
        if prompt.mask_yx is not None:
            kwargs["mask_input"] = mask_to_logits(prompt.mask_yx)[None]
        with torch.inference_mode():
            masks, scores, _ = self.predictor.predict(**kwargs)
        return Candidates.sorted(masks > 0.5, scores, self.name)


def mask_to_logits(mask_yx: NDArray[np.bool_]) -> NDArray[np.float32]:
    """A binary mask as SAM's low-resolution mask input: (256, 256) logits of about +-6.9.

    SAM 2 resizes the whole image (without keeping its aspect ratio) to 1024 x 1024, so the
    mask is resized the same way to 256 x 256.
    """
    from skimage.transform import resize

    small = resize(mask_yx.astype(np.float32), (_LOW_RES, _LOW_RES), order=1, anti_aliasing=False)
    probability = np.clip(small, 1e-3, 1 - 1e-3)
    result: NDArray[np.float32] = np.log(probability / (1 - probability)).astype(np.float32)
    return result
