"""The napari-free, Qt-free core of napari-instseg.

Everything here runs in scripts, on dask workers and in tests without a display. It takes
numpy arrays, pandas DataFrames, paths and small frozen dataclasses, and returns the same.
Nothing in this package may import napari, magicgui, qtpy or superqt (a test enforces it).
"""
