"""Child process of the crash test: annotate a store as fast as possible until killed.

Each mask is a rectangle drawn from ``seed``; after each commit returns, a line
``COMMITTED <id> <seed>`` is printed (flushed), so the parent knows what was committed.
"""

import sys

import numpy as np

from napari_instseg.core.store import AnnotationStore

SHAPE = (512, 512)


def mask_for(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y0, x0 = rng.integers(0, 480, 2)
    h, w = rng.integers(8, 120, 2)
    mask = np.zeros(SHAPE, bool)
    mask[y0 : y0 + h, x0 : x0 + w] = True
    return mask


def main(path: str, first_seed: int) -> None:
    store = AnnotationStore.open(path)
    session = store.session(annotator="crash-test")
    seed = first_seed
    print("READY", flush=True)
    while True:
        seed += 1
        try:
            result = session.commit(mask_for(seed), source="sam2" if seed % 2 else "manual")
        except Exception:  # covered entirely by earlier instances: try the next mask
            continue
        print(f"COMMITTED {result.instance_id} {seed}", flush=True)
        if seed % 3 == 0:
            session.retag(result.instance_id, occlusion="partial")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
