"""napari-instseg: instance-segmentation annotation for napari.

Importing this package is cheap: it imports neither napari, Qt nor torch. The napari-free
core lives in :mod:`napari_instseg.core`; the napari contributions are declared in
``napari.yaml`` and imported lazily by napari.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
