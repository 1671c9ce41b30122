"""Everything that happens once, before training: archives and folders of images → packed arrays.

Pure numpy + OpenCV (no paddle), so it runs anywhere and in worker processes cheaply.

    from data_prep import prepare, load_prepared
    prepare("Gemstones.zip", "data/gems", sizes=[64, 96])
    images, labels = load_prepared("data/gems", 64)   # uint8 (N, 64, 64, C) memmap, int64 (N,)
"""
from data_prep.errors import DataPrepError
from data_prep.packed import class_names, is_prepared, load_prepared
from data_prep.prepare import PrepareReport, prepare

__all__ = ["DataPrepError", "PrepareReport", "class_names", "is_prepared", "load_prepared", "prepare"]
