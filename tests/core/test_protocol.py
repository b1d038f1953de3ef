import json

import numpy as np
import pytest

from napari_instseg.core.errors import ProtocolError
from napari_instseg.core.protocol import AnnotationProtocol, Category, SamplingRates, TierThresholds, load_protocol


def test_defaults_follow_the_design():
    protocol = AnnotationProtocol.default()
    assert protocol.occlusion_rule == "visible"
    assert (protocol.tiers.none_max, protocol.tiers.partial_max) == (0.0, 0.35)
    assert [protocol.qa_rates.rate(t) for t in ("none", "partial", "heavy")] == [0.10, 0.20, 0.40]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_and_load_round_trip(tmp_path, protocol, suffix):
    custom = AnnotationProtocol(
        categories=protocol.categories,
        occlusion_rule="amodal",
        tiers=TierThresholds(partial_max=0.25),
        qa_rates=SamplingRates(none=0.05, partial=0.3, heavy=0.5, min_per_tier=2),
        name="cocoa-like",
    )
    path = tmp_path / f"protocol{suffix}"
    custom.save(path)
    assert load_protocol(path) == custom


@pytest.mark.parametrize(
    ("fraction", "tier"),
    [(0.0, "none"), (1e-9, "partial"), (0.35, "partial"), (0.35 + 1e-9, "heavy"), (1.0, "heavy")],
)
def test_tier_cut_points_at_their_boundaries(fraction, tier):
    assert TierThresholds().tier_of(fraction) == tier


def test_tiers_are_settings_and_nan_means_missing():
    cocoa = TierThresholds(partial_max=0.25)
    assert cocoa.tiers_of([0.0, 0.25, 0.3, np.nan]).tolist() == ["none", "partial", "heavy", ""]
    assert cocoa.tier_of(float("nan")) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "missing key 'categories'"),
        ({"categories": []}, "at least one category"),
        (
            {"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]},
            r"categories\[1\]\.id: duplicate category id 1",
        ),
        ({"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}, "duplicate category name 'a'"),
        ({"categories": [{"id": -1, "name": "a"}]}, "expected a non-negative integer .COCO ids from 0., got -1"),
        ({"categories": [{"id": 1, "name": "a", "color": "red"}]}, r"color: expected '#rrggbb'"),
        ({"categories": [{"id": 1, "name": "a"}], "occlusion_rule": "xray"}, "'xray' is not one of"),
        ({"categories": [{"id": 1, "name": "a"}], "tiers": {"partial_max": 0.0}}, "none_max < partial_max"),
        (
            {"categories": [{"id": 1, "name": "a"}], "qa_rates": {"heavy": 1.5}},
            r"qa_rates\.heavy: expected a rate in \[0, 1\]",
        ),
        ({"categories": [{"id": 1, "name": "a"}], "colour_map": 1}, r"unknown key\(s\) \['colour_map'\]"),
    ],
)
def test_invalid_protocols_get_clear_errors(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProtocolError, match=message) as info:
        load_protocol(path)
    assert str(path) in str(info.value)


def test_unparsable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ProtocolError, match=r"broken\.json: cannot parse"):
        load_protocol(path)


def test_category_lookup_errors_list_what_is_known(protocol):
    assert protocol.category(5).name == "mitosis"
    assert protocol.category_by_name("nucleus").id == 1
    with pytest.raises(ProtocolError, match=r"known ids: \[1, 5\]"):
        protocol.category(2)
    with pytest.raises(ProtocolError, match="known: \\['nucleus', 'mitosis'\\]"):
        protocol.category_by_name("tumour")


def test_direct_construction_is_validated():
    with pytest.raises(ProtocolError, match="duplicate category id"):
        AnnotationProtocol(categories=(Category(1, "a"), Category(1, "b")))
