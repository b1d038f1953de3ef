"""A COCO ``score`` carried through import, the instance table, the store and export, as users
run it (issue 15 item 3): a scored third-party file, our own export of pre-labels, and the
same file without scores (unchanged)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_instseg.cli import main
from napari_instseg.core.coco import import_coco
from napari_instseg.core.store import AnnotationStore

DATA = Path(__file__).resolve().parents[1] / "data"
VAL2014 = DATA / "coco_val2014_subset.json"  # real COCO val2014 annotations: overlaps and crowds
NUCLEI = DATA / "nuclei_dsb2018" / "fluo_1d4a5e72.png"  # real DSB 2018 image, 256 x 256, 27 nuclei


def _scored_val2014(tmp_path: Path, *, unscored_image: bool = False) -> tuple[Path, dict[int, float]]:
    """The real val2014 subset with a model-style ``score`` on every annotation (full-precision
    floats, a few integer 0 / 1 as JSON allows); ``unscored_image``: the first image's
    annotations have none. Returns the file and the scores by annotation id."""
    coco = json.loads(VAL2014.read_text())
    rng = np.random.default_rng(15)
    first_image = coco["images"][0]["id"]
    scores = {}
    for k, ann in enumerate(coco["annotations"]):
        if unscored_image and ann["image_id"] == first_image:
            continue
        ann["score"] = (1, 0)[k % 2] if k % 23 == 0 else float(rng.random())
        scores[ann["id"]] = ann["score"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(coco))
    return path, scores


def _scores_by_ann_id(path: Path) -> dict[int, float | None]:
    return {a["id"]: a.get("score") for a in json.loads(path.read_text())["annotations"]}


def _export(source: Path, out: Path, capsys) -> dict:
    assert main(["export", str(source), "-o", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def test_scored_file_imports_scores_into_the_table_and_exports_them_back(tmp_path, capsys):
    scored, scores = _scored_val2014(tmp_path)
    outdir = tmp_path / "imported"
    assert main(["import", str(scored), "-o", str(outdir)]) == 0
    imported = import_coco(scored)
    for item in imported.images:  # the table's score column, row by row
        for instance_id, ann in item.annotations.items():
            assert item.table.loc[instance_id, "score"] == scores[ann["id"]]
        assert item.table["score"].dtype == np.float64
    stem = Path(imported.images[0].image["file_name"]).stem
    csv = pd.read_csv(outdir / f"{stem}_instances.csv")
    assert "score" in csv.columns and csv["score"].notna().all()
    back = _export(outdir, tmp_path / "back.json", capsys)
    assert {a["id"]: a["score"] for a in back["annotations"]} == scores  # by annotation id, exactly
    assert all("score" not in a.get("attributes", {}) for a in back["annotations"])
    by_id = {a["id"]: a for a in back["annotations"]}
    for ann in json.loads(scored.read_text())["annotations"]:  # nothing else changed: every key as it came
        assert by_id[ann["id"]] == ann
    again = _export(outdir, tmp_path / "again.json", capsys)  # a second run: the same annotations
    assert again["annotations"] == back["annotations"]


def test_scores_survive_an_edit_in_the_import_folder_and_new_instances_get_one(tmp_path, capsys):
    """An edited instance keeps its score; an instance painted after the import gets 1.0."""
    import tifffile

    scored, scores = _scored_val2014(tmp_path)
    outdir = tmp_path / "imported"
    assert main(["import", str(scored), "-o", str(outdir)]) == 0
    item = import_coco(scored).images[0]
    stem = Path(item.image["file_name"]).stem
    labels = tifffile.imread(outdir / f"{stem}_labels.tif")
    victim = int(item.table.index[0])
    ys, xs = np.nonzero(labels == victim)
    labels[ys[: ys.size // 2], xs[: xs.size // 2]] = 0  # erase part of it
    new_id = int(labels.max()) + 1
    labels[:3, :3] = new_id
    tifffile.imwrite(outdir / f"{stem}_labels.tif", labels)
    back = _export(outdir, tmp_path / "back.json", capsys)
    by_instance = {a.get("instance_id"): a for a in back["annotations"] if a["image_id"] == item.image["id"]}
    edited = next(a for a in back["annotations"] if a["id"] == item.annotations[victim]["id"])
    assert edited["score"] == scores[edited["id"]] and edited["area"] < item.annotations[victim]["area"]
    assert by_instance[new_id]["score"] == 1.0  # "1.0 where an instance has none"


def test_scores_go_through_a_store_save_and_reopen(tmp_path, capsys):
    """A scored file's image in a store (as the napari reader and panels make one from it):
    export, reopen and act, export again: the same score for every instance."""
    scored, scores = _scored_val2014(tmp_path)
    imported = import_coco(scored)
    item = max(imported.images, key=lambda im: len(im.table))
    by_instance = {i: scores[ann["id"]] for i, ann in item.annotations.items() if i in set(np.unique(item.labels_yx))}
    path = tmp_path / "image.zarr"
    AnnotationStore.create(path, item.labels_yx, imported.protocol, image=item.image, table=item.table).close()
    first = _export(path, tmp_path / "first.json", capsys)
    assert {a["instance_id"]: a["score"] for a in first["annotations"]} == by_instance
    store = AnnotationStore.open(path)
    session = store.session()
    some = sorted(by_instance)[1]
    session.retag(some, occlusion="heavy")  # one saved action on a scored row
    store.close()
    with AnnotationStore.open(path, read_only=True) as reopened:
        assert reopened.table.loc[some, "score"] == by_instance[some]
    second = _export(path, tmp_path / "second.json", capsys)
    assert {a["instance_id"]: a["score"] for a in second["annotations"]} == by_instance
    third = _export(path, tmp_path / "third.json", capsys)  # a second run: identical annotations
    assert third["annotations"] == second["annotations"]


def test_our_own_prelabels_keep_their_scores_through_import_store_and_qa(tmp_path, capsys):
    """``prelabel --auto`` writes scored pre-labels; imported again their proposals carry the
    scores (not NaN), a store made from them exports the same scores, and ``qa`` ranks the
    round-tripped file exactly like the original (same AP)."""
    import tifffile
    from PIL import Image

    from napari_instseg.core.session import AnnotationSession

    auto = tmp_path / "auto.json"
    argv = ["prelabel", str(NUCLEI), "--auto", "--backend", "classic", "-o", str(auto)]
    assert main(argv) == 0
    original = json.loads(auto.read_text())
    file_scores = {a["instance_id"]: a["score"] for a in original["annotations"]}
    assert len(file_scores) > 10 and len(set(file_scores.values())) > 1
    imported = import_coco(auto)
    item = imported.images[0]
    session = AnnotationSession(item.labels_yx, item.table, imported.protocol)
    assert {i: r.score for i, r in session.prelabels.items()} == file_scores
    path = tmp_path / "nuclei.zarr"
    AnnotationStore.create(path, session.labels_yx, imported.protocol, image=item.image, table=session.table).close()
    with AnnotationStore.open(path) as store:  # reopened: the proposals carry the scores again
        reopened = store.session()
        assert {i: r.score for i, r in reopened.prelabels.items()} == file_scores
        reopened.accept(sorted(file_scores)[0])
    exported = _export(path, tmp_path / "exported.json", capsys)
    assert {a["instance_id"]: a["score"] for a in exported["annotations"]} == file_scores
    # qa of the round-tripped file equals qa of the original: ranked by the same scores
    truth = tmp_path / "truth.tif"
    labels_path = NUCLEI.with_name(NUCLEI.stem + "_labels.png")
    tifffile.imwrite(truth, np.asarray(Image.open(labels_path)).astype(np.uint32))
    gt = _export(truth, tmp_path / "gt.json", capsys)
    reports = []
    for name, dt in (("a", auto), ("b", tmp_path / "exported.json")):
        assert main(["qa", "--gt", str(tmp_path / "gt.json"), "--dt", str(dt), "-o", str(tmp_path / name)]) == 0
        reports.append(json.loads((tmp_path / name / "report.json").read_text())["overall"])
    capsys.readouterr()
    assert gt["annotations"] and reports[0]["AP"] == reports[1]["AP"] and reports[0]["AP50"] == reports[1]["AP50"]


def test_a_file_without_scores_imports_and_exports_as_before(tmp_path, capsys):
    imported = import_coco(VAL2014)
    assert all("score" not in item.table.columns for item in imported.images)
    outdir = tmp_path / "imported"
    assert main(["import", str(VAL2014), "-o", str(outdir)]) == 0
    back = _export(outdir, tmp_path / "back.json", capsys)
    assert all("score" not in a for a in back["annotations"])
    item = imported.images[0]
    path = tmp_path / "image.zarr"
    AnnotationStore.create(path, item.labels_yx, imported.protocol, image=item.image, table=item.table).close()
    from_store = _export(path, tmp_path / "store.json", capsys)
    assert from_store["annotations"] and all("score" not in a for a in from_store["annotations"])


def test_a_partly_scored_file_keeps_none_where_none_came_in(tmp_path, capsys):
    """Annotations without a score get NaN in the table (not 1.0, not 0) and come back
    without one from the import folder."""
    scored, scores = _scored_val2014(tmp_path, unscored_image=True)
    imported = import_coco(scored)
    assert "score" not in imported.images[0].table.columns  # that image has no scored annotation
    outdir = tmp_path / "imported"
    assert main(["import", str(scored), "-o", str(outdir)]) == 0
    back = _scores_by_ann_id(_export_path(outdir, tmp_path / "back.json", capsys))
    assert {i: s for i, s in back.items() if s is not None} == scores
    assert sum(s is None for s in back.values()) == sum(len(im.table) for im in imported.images[:1])


def _export_path(source: Path, out: Path, capsys) -> Path:
    _export(source, out, capsys)
    return out


@pytest.mark.parametrize(
    ("score", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), ("0.9", "'0.9'"), (True, "True"), (None, "None"), ([0.5], "[0.5]")],
)
def test_a_non_finite_or_non_numeric_score_is_refused_naming_file_annotation_and_field(tmp_path, capsys, score, shown):
    coco = json.loads(VAL2014.read_text())
    ann = coco["annotations"][3]
    ann["score"] = score
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(coco))  # NaN / Infinity as Python's json writes them
    before = bad.read_bytes()
    assert main(["import", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and f"(id {ann['id']})" in err and f"'score' must be a finite number, got {shown}" in err
    assert not (tmp_path / "out").exists() and bad.read_bytes() == before  # nothing written, input untouched


def test_slide_prelabels_exported_per_tile_carry_their_scores(tmp_path, capsys):
    """``prelabel-slide --auto`` then ``export --per-tile``: every annotation has its
    pre-label's score (the row's ``score``, as in every other export)."""
    import tifffile
    from skimage import data

    slide, store = tmp_path / "ihc.tif", tmp_path / "ihc.zarr"
    tifffile.imwrite(slide, data.immunohistochemistry()[:256, :256])
    argv = ["prelabel-slide", str(slide), "--store", str(store), "--auto", "--backend", "classic"]
    assert main([*argv, "--tile", "128", "--halo", "32"]) == 0
    with AnnotationStore.open(store, read_only=True) as opened:
        records = {i: r.score for i, r in opened.read_side("prelabel").items()}
        assert opened.table["score"].to_dict() == records
    assert len(records) > 5 and all(0 <= s <= 1 for s in records.values())
    tiles = tmp_path / "tiles.json"
    assert main(["export", str(store), "-o", str(tiles), "--per-tile", "128"]) == 0
    capsys.readouterr()
    coco = json.loads(tiles.read_text())
    assert len(coco["images"]) > 1
    assert all(a["score"] == records[a["instance_id"]] for a in coco["annotations"])


def test_another_tools_model_results_are_prelabels_to_review(tmp_path, capsys):
    """A third-party file whose annotations carry a ``score`` (a model's results) imports as
    pre-labels to review (source ``model-import``), never as accepted annotations; reviewing
    them measures against the mask as it came in, the QA's pre-label acceptance counts them,
    and the same file without scores imports as accepted annotations, as before."""
    from napari_instseg.core.qa.agreement import prelabel_stats
    from napari_instseg.core.session import AnnotationSession

    scored, _ = _scored_val2014(tmp_path)
    imported = import_coco(scored)
    item = max(imported.images, key=lambda im: len(im.table))
    assert set(item.table["source"]) == {"model-import"} and set(item.table["review"]) == {"pre-label"}
    plain = max(import_coco(VAL2014).images, key=lambda im: len(im.table))
    assert set(plain.table["source"]) == {"import"} and set(plain.table["review"]) == {"accepted"}

    path = tmp_path / "results.zarr"
    AnnotationStore.create(path, item.labels_yx, imported.protocol, image=item.image, table=item.table).close()
    store = AnnotationStore.open(path)
    session = store.session()
    assert isinstance(session, AnnotationSession)
    present = [i for i in item.table.index if (session.labels_yx == i).any()]
    first, second = present[:2]
    assert session.prelabels[first].score == item.table.loc[first, "score"]  # the model's score
    assert session.accept(first) == "accepted"
    session.reject(second)
    store.close()
    out = tmp_path / "reviewed.json"
    assert main(["export", str(path), "-o", str(out)]) == 0
    capsys.readouterr()
    reviewed = json.loads(out.read_text())
    by_instance = {a["instance_id"]: a for a in reviewed["annotations"]}
    assert by_instance[first]["attributes"]["review"] == "accepted"
    assert by_instance[first]["attributes"]["prelabel_iou"] == 1.0
    assert by_instance[first]["attributes"]["source"] == "model-import"
    stats = prelabel_stats(reviewed)["overall"]
    assert stats["n_reviewed"] == 2 and stats["accepted_as_is"] == 1 and stats["rejected"] == 1
    assert stats["n_prelabels"] == len(present) and second not in by_instance  # rejected: no annotation
    assert [r["instance_id"] for r in reviewed["instseg_rejected"]] == [second]  # listed apart, counted
    again = import_coco(out).images[0]  # our own export of them: states as they were saved
    assert again.table.loc[first, "review"] == "accepted" and again.table.loc[first, "source"] == "model-import"
