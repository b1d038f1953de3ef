"""The store doctor (issue 9): damage is detected on open, on export and by ``store check``,
never read as empty; ``store repair`` recovers what the journal holds, keeping a backup."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.store import AnnotationStore, StoreError, check_store


def _rect(y0, x0, y1, x1, shape=(300, 300)):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "d.zarr"
    with AnnotationStore.create(path, (300, 300)) as store:
        session = store.session()
        session.commit(_rect(10, 10, 60, 60), source="sam2")  # 1, with a proposal
        session.commit(_rect(100, 270, 140, 290), category=1)  # 2, across chunks (0, 1) / (0, 0)?
        session.commit(_rect(260, 260, 290, 290), amodal=True)  # 3, chunk (1, 1), amodal
        session.retag(2, occlusion="heavy")
        labels, table = session.labels_yx.copy(), session.table.copy()
    return path, labels, table


def _sql(path, statement, params=()):
    conn = sqlite3.connect(path / "instseg" / "store.sqlite")
    with conn:
        conn.execute(statement, params)
    conn.close()


def _cli(*args):
    return main(["store", *[str(a) for a in args]])


def test_a_healthy_store_checks_clean(filled, capsys):
    assert _cli("check", filled[0]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_a_deleted_label_chunk_is_detected_and_rebuilt_from_the_journal(filled, tmp_path, capsys):
    path, labels, _ = filled
    (path / "labels" / "c" / "1" / "1").unlink()  # instance 3's pixels
    with pytest.raises(StoreError, match=r"label chunk \(1, 1\) is missing.*store repair"):
        AnnotationStore.open(path)
    assert main(["export", str(path), "-o", str(tmp_path / "out.json")]) == 2
    assert not (tmp_path / "out.json").exists()
    assert _cli("check", path) == 2
    assert "label chunk (1, 1) is missing" in capsys.readouterr().err
    assert _cli("repair", path) == 0
    out = capsys.readouterr().out
    assert "rebuilt label chunk (1, 1)" in out and "lost:" not in out and "backup" in out
    with AnnotationStore.open(path) as store:
        np.testing.assert_array_equal(store.read_labels(), labels)


def test_a_damaged_chunk_is_not_read_as_background(filled):
    path, labels, _ = filled
    chunk = path / "labels" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7] + b"\x00" * 7)
    with AnnotationStore.open(path) as store:  # the open-time check sees files, not contents
        with pytest.raises(StoreError, match=r"label chunk \(0, 0\).*damaged"):
            store.read_labels()
        with pytest.raises(StoreError, match=r"damaged"):
            store.window_session((0, 0, 100, 100))
    report = check_store(path)
    assert report.problems == ["label chunk (0, 0) is damaged (checksum)"]
    assert _cli("repair", path) == 0
    with AnnotationStore.open(path) as store:
        np.testing.assert_array_equal(store.read_labels(), labels)


def test_a_missing_table_row_is_detected_and_restored_with_its_tags(filled, capsys):
    path, _, table = filled
    _sql(path, "DELETE FROM instances WHERE id = 2")
    with pytest.raises(StoreError, match="the instance table has 2 rows where 3 were saved"):
        AnnotationStore.open(path)
    assert _cli("check", path) == 2
    assert "have no table row (ids [2])" in capsys.readouterr().err
    assert _cli("repair", path) == 0
    with AnnotationStore.open(path) as store:
        assert store.table.loc[2, "occlusion"] == "heavy"  # from the journal, not a default
        assert store.table.loc[2, "category_id"] == table.loc[2, "category_id"]


def test_a_missing_side_record_is_detected_and_restored(filled):
    path = filled[0]
    _sql(path, "DELETE FROM side WHERE kind = 'amodal'")
    with pytest.raises(StoreError, match="0 amodal side records where 1 were saved"):
        AnnotationStore.open(path, read_only=True)
    assert _cli("repair", path) == 0
    with AnnotationStore.open(path) as store:
        assert sorted(store.read_side("amodal")) == [3]


def test_a_damaged_journal_record_is_set_aside_and_garbage_state_recomputed(filled, capsys):
    path = filled[0]
    _sql(path, "UPDATE journal SET payload = substr(payload, 1, 50) WHERE seq = 4")  # truncated retag
    _sql(path, "UPDATE meta SET value = '\"garbage\"' WHERE key = 'next_id'")
    with pytest.raises(StoreError, match="no valid 'next_id'"):
        AnnotationStore.open(path)
    assert _cli("check", path) == 2
    err = capsys.readouterr().err
    assert "journal record 4 is damaged" in err and "next id 'garbage'" in err
    assert _cli("repair", path) == 0
    out = capsys.readouterr().out
    assert "set damaged journal record 4 aside" in out
    with AnnotationStore.open(path) as store:
        session = store.session()
        assert session.ids.next_id == 4
        assert [e.op for e in session.undo_stack] == ["commit", "commit", "commit"]


def test_an_unreadable_database_is_rebuilt_from_the_labels(filled, capsys):
    path, labels, _ = filled
    (path / "instseg" / "store.sqlite").write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        (path / "instseg" / f"store.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="cannot be read"):
        AnnotationStore.open(path)
    assert _cli("repair", path) == 0
    assert "lost: the table's tags" in capsys.readouterr().out
    backups = list(path.glob("repair-backup-*/store.sqlite"))
    assert backups and backups[0].read_bytes() == b"garbage" * 100  # nothing deleted without a backup
    with AnnotationStore.open(path) as store:
        np.testing.assert_array_equal(store.read_labels(), labels)
        assert store.table.index.tolist() == [1, 2, 3]


def test_a_damaged_interrupted_action_is_reported_on_open_and_set_aside_by_repair(tmp_path, capsys):
    path = tmp_path / "p.zarr"
    store = AnnotationStore.create(path, (300, 300))
    session = store.session()
    session.commit(_rect(10, 10, 60, 60))
    store._apply = lambda *args: None  # a crash right after the write-ahead record
    session.commit(_rect(100, 100, 120, 120))
    store.close()
    _sql(path, "UPDATE journal SET payload = substr(payload, 1, 40) WHERE seq = 2")
    with pytest.raises(StoreError, match=r"journal record 2 is damaged.*interrupted by a crash.*store repair"):
        AnnotationStore.open(path)
    assert _cli("repair", path) == 0
    assert "set aside interrupted action 2" in capsys.readouterr().out
    with AnnotationStore.open(path) as again:
        assert again.table.index.tolist() == [1] and (again.read_labels() == 1).sum() == 2500


def test_a_bulk_write_killed_midway_leaves_no_pixel_without_a_row(tmp_path, monkeypatch):
    from napari_instseg.core.store import _bulk

    path = tmp_path / "b.zarr"
    store = AnnotationStore.create(path, (512, 512))
    tile = np.zeros((256, 256), np.uint32)
    tile[10:20, 10:20], tile[50:60, 50:60] = 1, 2

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the chunks, before the rows

    monkeypatch.setattr(_bulk, "insert_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        store.bulk_write((256, 0), tile)
    store.close()
    monkeypatch.undo()
    with AnnotationStore.open(path) as again:
        assert again.table.index.tolist() == [1, 2]  # default rows for the pixels found
        assert again.bbox_of(2) == (306, 50, 316, 60)
        assert again.bulk_write((0, 0), tile + np.where(tile > 0, 2, 0).astype(np.uint32)) == 2
    assert check_store(path).ok
