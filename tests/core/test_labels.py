import numpy as np
import pytest

from napari_instseg.core.errors import LabelImageError
from napari_instseg.core.labels import as_label_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
def test_integer_images_become_uint32(dtype):
    labels = np.array([[0, 1], [2, 3]], dtype=dtype)
    out = as_label_image(labels)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, labels)


def test_uint32_passes_without_copy_and_bool_is_instance_1():
    labels = np.zeros((3, 3), np.uint32)
    assert as_label_image(labels) is labels
    assert as_label_image(np.eye(2, dtype=bool)).tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize(
    ("array", "fragments"),
    [
        (np.zeros((2, 3, 4), np.uint8), ["must be 2-D", "shape (2, 3, 4)", "dtype uint8"]),
        (np.full((2, 2), 1.5), ["integer dtype", "dtype float64", "min 1.5", "max 1.5"]),
        (np.array([[-1, 2]], np.int16), ["[0, 4294967295]", "dtype int16", "min -1", "max 2"]),
        (np.array([[0, 2**33]], np.int64), ["max 8589934592", "shape (1, 2)"]),
    ],
)
def test_bad_label_images_name_dtype_shape_min_max(array, fragments):
    with pytest.raises(LabelImageError) as info:
        as_label_image(array, name="cells.tif")
    message = str(info.value)
    assert message.startswith("cells.tif (")
    for fragment in fragments:
        assert fragment in message
