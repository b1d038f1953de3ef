"""Sub-commands of ``napari-instseg`` that live in their own modules.

Each module here defines ``register(subparsers)``, which adds its sub-command(s) with
``set_defaults(func=...)``. :mod:`napari_instseg.cli` discovers the modules, so adding a
command needs no edit of ``cli.py``. Modules import nothing heavy at import time: ``--help``
must stay fast and free of torch and Qt.
"""
