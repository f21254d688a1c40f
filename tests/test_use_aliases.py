"""Class-name aliases of other datasets map onto FER-2013's labels; classes without a counterpart are
reported and skipped, never merged (fer_data/aliases.py)."""

from __future__ import annotations

import pytest

from fer_data.aliases import ALIASES, NO_COUNTERPART, canonical_label, map_class_names, normalize
from fer_data.classes import CLASS_NAMES


@pytest.mark.parametrize(
    "name, expected",
    [
        ("anger", "Angry"), ("Angry", "Angry"), ("ANG", "Angry"), ("AN", "Angry"),
        ("disgusted", "Disgust"), ("Disgust", "Disgust"),
        ("fearful", "Fear"), ("afraid", "Fear"), ("fear", "Fear"),
        ("happiness", "Happy"), ("happy", "Happy"), ("joy", "Happy"), ("HA", "Happy"),
        ("sadness", "Sad"), ("sad", "Sad"),
        ("surprised", "Surprise"), ("Surprise", "Surprise"),
        ("neutrality", "Neutral"), ("neutral", "Neutral"), ("NE", "Neutral"),
        ("3_happy", "Happy"), ("04 - Sad", "Sad"), ("  Neutral ", "Neutral"),
    ],
)
def test_alias_maps_to_canonical_class(name, expected):
    assert canonical_label(name) == CLASS_NAMES.index(expected)


@pytest.mark.parametrize("name", ["contempt", "Contempt", "calm", "uncertain", "Non-Face", "1", "7", "hapy", "other"])
def test_names_without_counterpart_are_not_mapped(name):
    assert canonical_label(name) is None


def test_every_canonical_name_maps_to_itself():
    assert [canonical_label(n) for n in CLASS_NAMES] == list(range(7))


def test_no_alias_is_also_a_no_counterpart_name():
    # "calm" is RAVDESS's own class beside "neutral": merging it would silently change the labels.
    assert not set(ALIASES) & NO_COUNTERPART
    assert "calm" in NO_COUNTERPART and "contempt" in NO_COUNTERPART


def test_map_class_names_reports_skipped_and_merged():
    m = map_class_names(["anger", "contempt", "happy", "joy", "sadness", "surprised", "neutrality", "xyz"])
    assert m.mapped == {"anger": 0, "happy": 3, "joy": 3, "sadness": 4, "surprised": 5, "neutrality": 6}
    assert m.skipped == {"contempt": "no-counterpart", "xyz": "unknown"}
    assert m.unknown == ["xyz"]
    assert m.merged == {"Happy": ["happy", "joy"]}
    lines = m.describe()
    assert "contempt -> skipped (no FER-2013 counterpart)" in lines
    assert "xyz -> skipped (unknown class name)" in lines
    assert "anger -> Angry" in lines


def test_normalize():
    assert normalize("0_Angry") == "angry"
    assert normalize("non-face") == "nonface"
    assert normalize("7") == ""  # a bare number is no name: RAF-DB's 1..7 are not FER's 0..6
    assert canonical_label("7") is None
