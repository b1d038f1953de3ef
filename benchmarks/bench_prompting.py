"""SAM 2 prompting overheads, as ratios against baselines measured in the same run.

1. Prompt -> committed mask through the plugin's session (``AnnotationSession.prompt`` +
   ``commit``: candidate sorting, the never-overwrite rule, the table row, the pre-label
   history) versus bare ``SAM2ImagePredictor.predict`` with the same point. Target <= 1.1x.
2. Loading a cached embedding (zarr on disk, fp16) versus running the image encoder.
   Target <= 5 % of the encoder time.

A randomly initialised SAM 2.1 hiera-tiny checkpoint is built for the run (timings are real;
masks are meaningless). Run: ``.venv/bin/python benchmarks/bench_prompting.py [--repeats 30]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import median_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch
    from sam2.build_sam import build_sam2
    from skimage import data

    from napari_instseg.core.prompting.base import ImageKey
    from napari_instseg.core.prompting.cache import EmbeddingCache
    from napari_instseg.core.prompting.sam2 import Sam2Prompter
    from napari_instseg.core.session import AnnotationSession

    image = data.immunohistochemistry()
    rng = np.random.default_rng(0)
    points_yx = rng.integers(20, 490, size=(args.repeats, 2)).astype(float)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "sam2.1_hiera_tiny.pt"
        torch.manual_seed(0)
        torch.save(
            {"model": build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu").state_dict()}, checkpoint
        )
        prompter = Sam2Prompter("tiny", checkpoint, device=args.device, cache=EmbeddingCache(Path(tmp) / "emb.zarr"))
        predictor = prompter.predictor

        # -- 2. cache versus encoder
        key = ImageKey.whole("bench:ihc", image.shape[:2])
        t_encode = median_time(lambda: prompter.encode(image), 3)
        prompter.set_image(image, key)  # writes the cache entry
        t_load = median_time(lambda: prompter.set_image(image, key), 5)
        assert prompter.last_from_cache

        # -- 1. plugin path versus bare predict, interleaved to share the machine's noise
        session = AnnotationSession(np.zeros(image.shape[:2], np.uint32), prompter=prompter)
        bare, plugin = [], []
        for y, x in points_yx:
            start = time.perf_counter()
            with torch.inference_mode():
                predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]), multimask_output=True)
            bare.append(time.perf_counter() - start)
            session.labels_yx[:] = 0  # an empty canvas each time: every commit writes its mask
            start = time.perf_counter()
            session.prompt(points_yx=[[y, x]])
            session.commit(reviewed=True)  # as the Prompt panel commits a candidate a person saw
            plugin.append(time.perf_counter() - start)

    t_bare, t_plugin = statistics.median(bare), statistics.median(plugin)
    print(f"device: {args.device}; image 512 x 512 RGB; {args.repeats} prompts")
    print(f"bare SAM2ImagePredictor.predict:    {t_bare * 1000:8.1f} ms (median)")
    print(f"plugin prompt -> committed mask:     {t_plugin * 1000:8.1f} ms (median)")
    print(f"plugin / bare:                       {t_plugin / t_bare:8.3f}x  (target <= 1.1x)")
    print(f"image encoder:                       {t_encode * 1000:8.0f} ms (median)")
    print(f"cached embedding load:               {t_load * 1000:8.1f} ms (median)")
    print(f"cache load / encoder:                {t_load / t_encode:8.1%}   (target <= 5 %)")


if __name__ == "__main__":
    main()
