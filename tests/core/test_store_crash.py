"""SIGKILL at random moments while annotating: the reopened store holds every committed
instance bit-exact and is never corrupt. (benchmarks/bench_store_crash.py runs more trials.)"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_instseg.core.store import AnnotationStore
from napari_instseg.core.store import check_store as doctor_check

sys.path.insert(0, str(Path(__file__).parent))
from _crash_child import SHAPE, mask_for

CHILD = Path(__file__).parent / "_crash_child.py"


def run_trial(store_path: Path, first_seed: int, kill_after_s: float) -> list[tuple[int, int]]:
    """Annotate in a child process, SIGKILL it after ``kill_after_s``; return its commits."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(store_path), str(first_seed)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "READY"
    time.sleep(kill_after_s)
    os.kill(child.pid, signal.SIGKILL)
    out, _ = child.communicate()
    return [(int(i), int(s)) for _, i, s in (line.split() for line in out.splitlines() if line.startswith("COMMITTED"))]


def check_store(store_path: Path, committed: list[tuple[int, int]], expected: np.ndarray) -> None:
    """Every reported commit is present, bit-exact, with its row; the store opens cleanly.

    ``expected`` (updated in place) is the label image the reported commits make; an
    instance the child committed but could not report before the kill is accepted (and
    added) when it only covers background, as a commit must.
    """
    with AnnotationStore.open(store_path) as store:  # completes an interrupted action
        labels = store.read_labels()
        table = store.table
    assert doctor_check(store_path).problems == []  # every checksum and count holds
    for instance_id, seed in committed:  # replay: later masks never overwrite earlier ones
        expected[mask_for(seed) & (expected == 0)] = instance_id
    reported = expected > 0
    np.testing.assert_array_equal(labels[reported], expected[reported])
    extra = set(np.unique(labels[~reported]).tolist()) - {0}
    last = int(expected.max())
    assert extra <= {last + 1}, f"unexpected instances {extra}"  # at most the one being committed
    for instance_id in extra:
        expected[labels == instance_id] = instance_id
    present = set(np.unique(labels).tolist()) - {0}
    assert present <= set(table.index.tolist()), "pixels without a table row"
    for instance_id, _ in committed:
        assert instance_id in table.index


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_a_commit(tmp_path):
    rng = np.random.default_rng(2026)
    store_path = tmp_path / "crash.zarr"
    AnnotationStore.create(store_path, SHAPE).close()
    expected = np.zeros(SHAPE, np.uint32)
    n_committed = 0
    trials = 20
    for trial in range(trials):
        committed = run_trial(store_path, first_seed=trial * 10_000, kill_after_s=float(rng.uniform(0.05, 0.6)))
        check_store(store_path, committed, expected)
        n_committed += len(committed)
    assert n_committed > trials  # the kills landed while work was going on
