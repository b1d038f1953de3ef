"""Child process of the slide-batch crash tests: pre-label a slide and SIGKILL itself in the
middle of the ``KILL_AT``-th saved action (``apply``: after its write-ahead record and label
chunks, before its rows) or right after it returned (``after``: where the tile used to be
recorded done in a separate file). Before dying it prints ``CRASH row col``: the tile whose
commit it was."""

import os
import signal
import sys

import napari_instseg.core.batch as batch
from napari_instseg.core.prompting import Prompt
from napari_instseg.core.store import AnnotationStore

TILE, HALO = 128, 16


def prompts():
    """Point prompts in five tiles of the slide's tissue (level-0 pixels; few: the classic
    prompter takes about a second each)."""
    return [Prompt.make(points_yx=[yx]) for yx in ([40, 40], [40, 168], [168, 40], [168, 168], [296, 296])]


def config():
    return batch.BatchConfig(backend="classic", tile_px=TILE, halo_px=HALO)


class Tracked(set):
    """The run's set of done tiles, remembering the tile being committed."""

    last = None

    def add(self, key):
        Tracked.last = key
        super().add(key)


def _die():
    print("CRASH", *Tracked.last, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main(slide, store, mode, kill_at, auto):
    done_tiles = batch._done_tiles
    batch._done_tiles = lambda s: Tracked(done_tiles(s))
    count = [0]
    if mode == "apply":
        io = AnnotationStore._io

        def crash_io(self, step):
            if step == "apply":
                count[0] += 1
                if count[0] == kill_at:
                    _die()
            io(self, step)

        AnnotationStore._io = crash_io
    else:
        record = AnnotationStore.record

        def crash_record(self, kind, edit, **kwargs):
            seq = record(self, kind, edit, **kwargs)
            count[0] += kind == "do"
            if count[0] == kill_at:
                _die()
            return seq

        AnnotationStore.record = crash_record
    if auto:
        batch.prelabel_slide(slide, store, auto="cells", config=config(), workers=1)
    else:
        batch.prelabel_slide(slide, store, prompts(), config=config(), workers=1)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "auto")
