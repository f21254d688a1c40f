"""Map other datasets' class names onto FER-2013's seven classes.

Other facial-expression datasets name the same emotions differently (CK+/AffectNet ``anger``,
``sadness``, ``happiness``; JAFFE/KDEF two-letter codes ``AN``, ``HA``; ``surprised``, ``fearful``,
...). :func:`map_class_names` turns a dataset's class names into FER-2013 labels and says, for every
name it does not map, why:

* ``no-counterpart``: a known emotion FER-2013 does not have (``contempt``; RAVDESS's ``calm``,
  which RAVDESS keeps apart from ``neutral``; AffectNet's ``none``/``uncertain``/``non-face``).
  These are reported and skipped, never merged into a neighbouring class.
* ``unknown``: a name we do not recognise (a typo, or a bare number: RAF-DB numbers its classes
  1..7 in another order than FER-2013's 0..6, so digits are never guessed). Callers decide whether
  that is an error (the default in ``sweep.evaluate``) or a skip.

Names are matched case-insensitively, ignoring separators and a leading number prefix such as
``3_happy`` or ``04 - sad``. Usage::

    >>> m = map_class_names(["anger", "Happiness", "contempt"])
    >>> m.mapped, m.skipped
    ({'anger': 0, 'Happiness': 3}, {'contempt': 'no-counterpart'})
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fer_data.classes import CLASS_NAMES

# Canonical class -> accepted spellings (already normalised: lower case, letters only).
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "Angry": ("angry", "anger", "ang", "an", "mad"),
    "Disgust": ("disgust", "disgusted", "disgusting", "dis", "di"),
    "Fear": ("fear", "fearful", "afraid", "scared", "fea", "fe", "af"),
    # "joy" is the usual synonym of happiness in emotion taxonomies (Plutchik, GoEmotions).
    "Happy": ("happy", "happiness", "joy", "joyful", "hap", "ha"),
    "Sad": ("sad", "sadness", "sa"),
    "Surprise": ("surprise", "surprised", "sur", "su"),
    "Neutral": ("neutral", "neutrality", "neu", "ne"),
}

# Known classes with no FER-2013 counterpart. "calm" is deliberately NOT neutral: RAVDESS has both.
NO_COUNTERPART: frozenset[str] = frozenset(
    {"contempt", "contemptuous", "co", "calm", "none", "uncertain", "nonface", "noface"}
)

ALIASES: dict[str, int] = {
    spelling: CLASS_NAMES.index(canonical)
    for canonical, spellings in _SPELLINGS.items()
    for spelling in spellings
}

_NUMBER_PREFIX = re.compile(r"^\d+[\s_.\-]*(?=[A-Za-z])")


def normalize(name: str) -> str:
    """Lower-case ``name`` and drop a leading number prefix and every non-letter (``"3_Happy"`` -> ``"happy"``)."""
    name = _NUMBER_PREFIX.sub("", name.strip())
    return re.sub(r"[^a-z]", "", name.lower())


def canonical_label(name: str) -> int | None:
    """FER-2013 label (0..6) for a class name, or ``None`` when it has no mapping."""
    return ALIASES.get(normalize(name))


@dataclass(frozen=True)
class ClassMapping:
    """How a dataset's class names map to FER-2013 labels.

    ``mapped``: original name -> label 0..6. ``skipped``: original name -> ``"no-counterpart"`` or
    ``"unknown"``. Several names may map to the same label (e.g. ``happy`` and ``joy`` folders);
    :attr:`merged` lists those so a report can show it.
    """

    mapped: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def unknown(self) -> list[str]:
        return [n for n, why in self.skipped.items() if why == "unknown"]

    @property
    def merged(self) -> dict[str, list[str]]:
        """Canonical class -> the several original names mapped to it (only classes with >1 name)."""
        by_label: dict[int, list[str]] = {}
        for name, label in self.mapped.items():
            by_label.setdefault(label, []).append(name)
        return {CLASS_NAMES[lab]: names for lab, names in sorted(by_label.items()) if len(names) > 1}

    def describe(self) -> list[str]:
        """One human-readable line per original class name, in input order."""
        lines = []
        for name in list(self.mapped) + list(self.skipped):
            if name in self.mapped:
                lines.append(f"{name} -> {CLASS_NAMES[self.mapped[name]]}")
            elif self.skipped[name] == "no-counterpart":
                lines.append(f"{name} -> skipped (no FER-2013 counterpart)")
            else:
                lines.append(f"{name} -> skipped (unknown class name)")
        return lines


def map_class_names(names: list[str] | tuple[str, ...]) -> ClassMapping:
    """Map each of ``names`` to a FER-2013 label or record why it is skipped (see module doc)."""
    mapped: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name in names:
        key = normalize(name)
        if key in ALIASES:
            mapped[name] = ALIASES[key]
        elif key in NO_COUNTERPART:
            skipped[name] = "no-counterpart"
        else:
            skipped[name] = "unknown"
    return ClassMapping(mapped=mapped, skipped=skipped)


def accepted_names() -> str:
    """Comma-separated accepted spellings per class, for error messages."""
    return "; ".join(f"{c}: {', '.join(s)}" for c, s in _SPELLINGS.items())
