"""Classic backend: no weights, real accuracy on real hand-annotated nuclei."""

import numpy as np
import pytest
from scipy import ndimage

from napari_instseg.core.prompting import Prompt, PromptError
from napari_instseg.core.prompting.classic import ClassicPrompter


@pytest.fixture(scope="module")
def nuclei():
    """stardist's bundled 2018 Data Science Bowl image with its hand-made instance mask."""
    data = pytest.importorskip("stardist.data")
    image, mask = data.test_image_nuclei_2d(return_mask=True)
    return image, mask


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_a_box_per_true_nucleus_reaches_iou_half_for_most(nuclei):
    image, truth = nuclei
    prompter = ClassicPrompter()
    prompter.set_image(image)
    ious = []
    for instance_id, slices in enumerate(ndimage.find_objects(truth), start=1):
        if slices is None:
            continue
        ys, xs = slices
        box = [xs.start, ys.start, xs.stop - 1, ys.stop - 1]
        best = prompter.predict(Prompt.make(box_xyxy=box)).masks_yx[0]
        ious.append(_iou(best, truth == instance_id))
    ious = np.asarray(ious)
    assert ious.size > 100
    assert (ious >= 0.5).mean() >= 0.80, f"only {(ious >= 0.5).mean():.0%} of nuclei reach IoU 0.5"


def test_points_positive_and_negative(nuclei):
    image, truth = nuclei
    prompter = ClassicPrompter()
    prompter.set_image(image)
    ys, xs = np.nonzero(truth == 10)
    centre = [ys[len(ys) // 2], xs[len(xs) // 2]]
    candidates = prompter.predict(Prompt.make(points_yx=[centre]))
    assert candidates.source == "classic" and 1 <= len(candidates) <= 3
    assert list(candidates.scores) == sorted(candidates.scores, reverse=True)
    assert candidates.masks_yx[0][centre[0], centre[1]]
    negative = prompter.predict(
        Prompt.make(points_yx=[centre, [centre[0], centre[1] + 3]], point_labels=[1, 0]), multimask=False
    )
    assert len(negative) == 1 and not negative.masks_yx[0][centre[0], centre[1] + 3]


def test_rgb_images_and_bad_prompts(ihc_image):
    prompter = ClassicPrompter()
    prompter.set_image(ihc_image)
    out = prompter.predict(Prompt.make(box_xyxy=[300, 200, 260, 160]))
    assert out.masks_yx.shape[1:] == (512, 512)
    with pytest.raises(PromptError, match="needs at least one positive point, a box or a previous mask"):
        Prompt.make(points_yx=[[5, 5]], point_labels=[0])
    with pytest.raises(PromptError, match=r"Box \[x0=600"):
        prompter.predict(Prompt.make(box_xyxy=[600, 0, 700, 10]))
