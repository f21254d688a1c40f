"""The canonical FER-2013 class and usage names.

Label order is the original CSV's (0 Angry ... 6 Neutral). It is NOT alphabetical: sorting the
image-folder release's class folders alphabetically would silently swap Sad, Surprise and Neutral,
a classic FER bug. ``tests/test_data_sources.py`` pins this tuple.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)

# Lower-case folder name of the image-folder release -> label.
FOLDER_TO_LABEL: dict[str, int] = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}

# Kaggle "Usage" value -> split name used everywhere else in the project.
USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLITS: tuple[str, ...] = ("train", "val", "test")

IMAGE_SIZE = 48  # FER-2013 faces are 48x48 grayscale
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 2304 values per CSV row
