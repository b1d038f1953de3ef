"""Stratified Mask AP speed: overall + three occlusion tiers, against pycocotools and
faster-coco-eval on the same data, in the same run.

Data: 100 images x 300 nucleus-like instances (about 30k references), candidates perturbed
from 90 % of them (about 27k) with random scores; references carry random occlusion tiers.
Target: our four evaluations together <= 2x the time of ONE faster-coco-eval evaluation, with
the overall AP equal to pycocotools'.

Run: ``.venv/bin/python benchmarks/bench_qa.py [--images 100] [--skip-pycocotools]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np
from pycocotools import mask as mask_utils

from napari_instseg.core.qa import EvalParams, prepare, scores_of


def synthetic_sets(n_images: int, per_image: int, size: int = 512, seed: int = 0) -> tuple[dict, list]:
    """Reference COCO dict and candidate results list of ellipses on a grid per image."""
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i}.png", "height": size, "width": size} for i in range(n_images)]
    gts, dts = [], []
    side = int(np.ceil(np.sqrt(per_image)))
    cell = size // side
    for image in images:
        for k in range(per_image):
            cy, cx = (k // side + 0.5) * cell, (k % side + 0.5) * cell
            ry, rx = rng.uniform(cell * 0.2, cell * 0.45, 2)
            mask = np.zeros((size, size), np.uint8)
            mask[ellipse(cy, cx, ry, rx, shape=mask.shape)] = 1
            encoded = mask_utils.encode(np.asfortranarray(mask))
            encoded["counts"] = encoded["counts"].decode()
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": image["id"],
                    "category_id": 1,
                    "segmentation": encoded,
                    "area": float(mask.sum()),
                    "bbox": mask_utils.toBbox(encoded).tolist(),
                    "iscrowd": 0,
                    "occlusion": str(rng.choice(["none", "partial", "heavy"], p=[0.6, 0.3, 0.1])),
                }
            )
            if rng.random() < 0.9:
                dy, dx = rng.integers(-2, 3, 2)
                moved = np.zeros_like(mask)
                moved[
                    ellipse(
                        cy + dy, cx + dx, ry * rng.uniform(0.85, 1.15), rx * rng.uniform(0.85, 1.15), shape=mask.shape
                    )
                ] = 1
                det = mask_utils.encode(np.asfortranarray(moved))
                det["counts"] = det["counts"].decode()
                dts.append(
                    {"image_id": image["id"], "category_id": 1, "segmentation": det, "score": float(rng.random())}
                )
    return {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "nucleus"}]}, dts


def _cocoeval_ap(reference: object, evaluator_class: type, dt: list, max_dets: int) -> float:
    """Mean precision (area 'all', the one detection limit) of a COCOeval-like engine."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = evaluator_class(reference, reference.loadRes(copy.deepcopy(dt)), "segm")
        evaluator.params.maxDets = [max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    return float(np.mean(precision[precision > -1]))


def pycocotools_ap(gt: dict, dt: list, max_dets: int) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCO()
        reference.dataset = copy.deepcopy(gt)
        reference.createIndex()
    return _cocoeval_ap(reference, COCOeval, dt, max_dets)


def faster_ap(gt: dict, dt: list, max_dets: int) -> float:
    import faster_coco_eval

    with contextlib.redirect_stdout(io.StringIO()):
        reference = faster_coco_eval.COCO(copy.deepcopy(gt))
    return _cocoeval_ap(reference, faster_coco_eval.COCOeval_faster, dt, max_dets)


def ours(gt: dict, dt: list, max_dets: int) -> dict:
    evaluation = prepare(gt, dt, EvalParams(max_dets=max_dets))
    return {
        name: scores_of(evaluation, None if name == "overall" else name)
        for name in ("overall", "none", "partial", "heavy")
    }


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--per-image", type=int, default=300)
    parser.add_argument("--skip-pycocotools", action="store_true")
    args = parser.parse_args()
    gt, dt = synthetic_sets(args.images, args.per_image)
    max_dets = 1000
    print(f"{len(gt['annotations'])} references, {len(dt)} candidates, {args.images} images")
    ap_faster, t_faster = timed(faster_ap, gt, dt, max_dets)
    results, t_ours = timed(ours, gt, dt, max_dets)
    print(f"faster-coco-eval, one evaluation:    {t_faster:7.2f} s  AP {ap_faster:.6f}")
    print(f"ours, overall + 3 tiers:             {t_ours:7.2f} s  AP {results['overall'].AP:.6f}")
    for tier in ("none", "partial", "heavy"):
        print(f"   {tier:8s} AP {results[tier].AP:.4f}  AP50 {results[tier].AP50:.4f}  n_gt {results[tier].n_gt}")
    print(f"ours (4 evaluations) / faster-coco-eval (1): {t_ours / t_faster:5.2f}x  (target <= 2x)")
    if not args.skip_pycocotools:
        ap_ref, t_ref = timed(pycocotools_ap, gt, dt, max_dets)
        print(f"pycocotools, one evaluation:         {t_ref:7.2f} s  AP {ap_ref:.6f}")
        print(f"|AP ours - AP pycocotools| = {abs(results['overall'].AP - ap_ref):.2e}")
        print(f"pycocotools (1) / ours (4): {t_ref / t_ours:5.1f}x")


if __name__ == "__main__":
    main()
