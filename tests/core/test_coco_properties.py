"""Property tests: any label image survives export -> pycocotools -> import unchanged."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from napari_instseg.core.coco import AnnotatedImage, export_coco, import_coco

label_images = arrays(
    st.sampled_from([np.uint8, np.uint16, np.int32, np.uint32]),
    st.tuples(st.integers(1, 32), st.integers(1, 32)),
    elements=st.integers(0, 6),
)


@settings(max_examples=100, deadline=None)
@given(labels=label_images, ids_offset=st.sampled_from([0, 1000, 2**31]))
def test_label_image_round_trip(labels, ids_offset):
    labels = labels.astype(np.uint32)
    labels[labels > 0] += np.uint32(ids_offset)  # large, sparse ids survive too
    coco = export_coco([AnnotatedImage(labels, None, "p.png")]).coco
    for ann in coco["annotations"]:
        decoded = mask_utils.decode(ann["segmentation"])
        np.testing.assert_array_equal(decoded, labels == ann["instance_id"])
        assert ann["area"] == decoded.sum()
    item = import_coco(coco).images[0]
    np.testing.assert_array_equal(item.labels_yx, labels)
    assert item.overlap_px == 0
