"""The writer lock and atomic creation (issue 9): one writer when two processes race, no
stuck stores after a SIGKILL, empty / garbled lock files, holders on other hosts."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_instseg.core.store import AnnotationStore, StoreError, _lock

ROUNDS = 30


def _racer(path, barrier, results, who):
    from napari_instseg.core.store import AnnotationStore, StoreError

    for round_ in range(ROUNDS):
        barrier.wait()
        store = AnnotationStore.open(path)
        session = store.session()
        mask = np.zeros((64, 64), bool)
        mask[round_ * 2 : round_ * 2 + 2, who * 32 : who * 32 + 8] = True
        try:
            session.commit(mask)
            committed = True
        except StoreError:
            committed = False
        results.put((round_, who, store.read_only, committed))
        barrier.wait()
        store.close()
        barrier.wait()


def test_two_processes_racing_to_open_get_one_writer_every_time(tmp_path):
    path = tmp_path / "race.zarr"
    AnnotationStore.create(path, (64, 64)).close()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(path), barrier, results, who)) for who in (0, 1)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=120) for _ in range(2 * ROUNDS)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    by_round: dict[int, list[tuple[bool, bool]]] = {}
    for round_, _, read_only, committed in got:
        by_round.setdefault(round_, []).append((read_only, committed))
    for round_, pair in by_round.items():
        assert sorted(pair) == [(False, True), (True, False)], f"round {round_}: {pair}"
    with AnnotationStore.open(path) as store:  # every commit kept, every label id has its row
        labels = store.read_labels()
        assert store.n_instances == ROUNDS
        assert set(np.unique(labels).tolist()) - {0} == set(store.table.index.tolist())


@pytest.mark.parametrize("content", [b"", b"\x00\x17garbage{", b'{"pid": 1, "host": "elsewhere"}'])
def test_a_leftover_lock_file_never_makes_the_store_read_only(tmp_path, content):
    path = tmp_path / "s.zarr"
    AnnotationStore.create(path, (8, 8)).close()
    (path / "instseg" / "lock").write_bytes(content)  # what a kill mid-write could leave
    with AnnotationStore.open(path) as store:
        assert not store.read_only


def test_a_sigkilled_writer_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "s.zarr"
    AnnotationStore.create(path, (8, 8)).close()
    code = (
        "import sys, time; from napari_instseg.core.store import AnnotationStore;"
        "s = AnnotationStore.open(sys.argv[1]); print(s.read_only, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "False"
    with AnnotationStore.open(path) as busy:
        assert busy.read_only and f"process {child.pid} on {socket.gethostname()}" in busy.lock_message
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with AnnotationStore.open(path) as store:
        assert not store.read_only


def _excl_lock(tmp_path, holder: bytes) -> Path:
    (tmp_path / "s" / "instseg").mkdir(parents=True)
    lock = tmp_path / "s" / "instseg" / "lock"
    lock.with_name("lock.excl").write_bytes(holder)
    return lock


def test_exclusive_create_fallback_takes_over_dead_and_garbled_holders(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}).encode()
    for i, holder in enumerate([record, b"", b"{garbage"]):
        lock = _excl_lock(tmp_path / str(i), holder)
        taken, message = _lock._acquire_excl(lock)
        assert taken is not None and message == ""
        assert _lock.holder_of(lock.with_name("lock.excl"))["pid"] == os.getpid()
        taken.release()
        assert not lock.with_name("lock.excl").exists()


def test_exclusive_create_fallback_never_takes_over_a_holder_on_another_host(tmp_path):
    # the same pid number on another machine says nothing about that machine's process
    lock = _excl_lock(tmp_path, json.dumps({"pid": os.getpid() + 10**6, "host": "node-b"}).encode())
    taken, message = _lock._acquire_excl(lock)
    assert taken is None
    assert "on node-b; opened read-only" in message and "store repair --unlock" in message
    assert _lock.break_lock(lock)
    taken, message = _lock._acquire_excl(lock)
    assert taken is not None
    taken.release()


def test_creation_is_atomic(tmp_path, monkeypatch):
    from napari_instseg.core.store import _build

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_build, "record_chunks", broken)
    labels = np.zeros((40, 40), np.uint32)
    labels[5:9, 5:9] = 3
    with pytest.raises(OSError, match="No space"):
        AnnotationStore.create(tmp_path / "new.zarr", labels)
    assert os.listdir(tmp_path) == []  # nothing half-made, no temporary left


def test_a_store_killed_while_being_created_leaves_nothing_and_a_rerun_works(tmp_path):
    path = tmp_path / "new.zarr"
    code = (
        "import sys, time; from napari_instseg.core.store import _build, AnnotationStore;"
        "_build.record_chunks = lambda *a, **k: (print('BUILDING', flush=True), time.sleep(60));"
        "AnnotationStore.create(sys.argv[1], (64, 64))"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "BUILDING"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not path.exists() and len(os.listdir(tmp_path)) == 1  # only the hidden build folder
    AnnotationStore.create(path, (64, 64)).close()  # a rerun works and clears the leftover
    assert os.listdir(tmp_path) == ["new.zarr"]
    with pytest.raises(StoreError, match="already exists"):
        AnnotationStore.create(path, (64, 64))


def test_a_store_dropped_without_close_gives_its_lock_back(tmp_path):
    import gc

    path = tmp_path / "s.zarr"
    AnnotationStore.create(path, (8, 8)).close()
    session = AnnotationStore.open(path).session()  # the caller keeps only the session
    with AnnotationStore.open(path) as second:
        assert second.read_only
    del session
    gc.collect()
    with AnnotationStore.open(path) as third:
        assert not third.read_only


def _writer(path, started, n_commits):
    from napari_instseg.core.store import AnnotationStore

    with AnnotationStore.open(path) as store:
        session = store.session()
        started.set()
        for k in range(n_commits):
            mask = np.zeros((256, 256), bool)
            mask[(k % 16) * 16 : (k % 16) * 16 + 12, (k // 16) * 16 : (k // 16) * 16 + 12] = True
            session.commit(mask)


def test_a_reader_in_another_process_never_sees_half_an_action(tmp_path):
    """While one process commits, another reads the store (read-only) again and again: every
    read is consistent (no 'instance without a row', no 'damaged chunk'), never an error."""
    path = tmp_path / "busy.zarr"
    AnnotationStore.create(path, (256, 256)).close()
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    writer = ctx.Process(target=_writer, args=(str(path), started, 48))
    writer.start()
    assert started.wait(120)
    reads = 0
    try:
        while writer.is_alive():
            with AnnotationStore.open(path, read_only=True) as store:
                session = store.session()
                labels = session.labels_yx
                assert set(np.unique(labels).tolist()) - {0} <= set(session.table.index.tolist())
                reads += 1
    finally:
        writer.join(timeout=120)
    assert writer.exitcode == 0 and reads > 0
    with AnnotationStore.open(path) as store:
        assert store.n_instances == 48
