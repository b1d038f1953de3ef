"""The annotation protocol: taxonomy, occlusion rule, occlusion tiers and QA sampling rates.

A project fixes its protocol before annotating. It is stored with the annotations and written
into every export (COCO ``info.protocol``), so that exports can be re-bucketed later.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.errors import ProtocolError

__all__ = [
    "OCCLUSION_RULES",
    "OCCLUSION_TIERS",
    "AnnotationProtocol",
    "Category",
    "SamplingRates",
    "TierThresholds",
    "load_protocol",
]

OCCLUSION_RULES = ("visible", "amodal")
"""``visible``: label only what the camera sees; ``amodal``: also the full inferred outline."""

OCCLUSION_TIERS = ("none", "partial", "heavy")
"""Occlusion tiers from fully visible to heavily occluded."""

_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Category:
    """One class of the taxonomy.

    Parameters
    ----------
    id : int
        COCO category id, a non-negative integer unique in the protocol (napari-SAM4IS and
        other tools number categories from 0).
    name : str
        Unique, non-empty display name.
    supercategory : str
        COCO supercategory (may be empty).
    color : str or None
        Display colour as ``"#rrggbb"``, or None to let the viewer choose.
    """

    id: int
    name: str
    supercategory: str = ""
    color: str | None = None


@dataclass(frozen=True)
class TierThresholds:
    """Cut-points from occluded fraction to occlusion tier.

    ``none``: occluded fraction <= ``none_max`` (default 0: fully visible);
    ``partial``: up to ``partial_max`` (default 0.35, after Caltech / CityPersons);
    ``heavy``: above ``partial_max``. COCOA-style projects use ``partial_max=0.25``.
    """

    none_max: float = 0.0
    partial_max: float = 0.35

    def tier_of(self, occluded_fraction: float) -> str | None:
        """Return the tier of one occluded fraction in [0, 1], or None when it is missing (NaN)."""
        tiers = self.tiers_of(np.array([occluded_fraction], dtype=float))
        return None if tiers[0] == "" else str(tiers[0])

    def tiers_of(self, occluded_fraction: ArrayLike) -> NDArray[np.str_]:
        """Vectorised :meth:`tier_of`: an array of tier names, ``""`` where the input is NaN."""
        fraction = np.asarray(occluded_fraction, dtype=float)
        out = np.full(fraction.shape, "", dtype="<U7")
        valid = ~np.isnan(fraction)
        out[valid & (fraction <= self.none_max)] = "none"
        out[valid & (fraction > self.none_max) & (fraction <= self.partial_max)] = "partial"
        out[valid & (fraction > self.partial_max)] = "heavy"
        return out


@dataclass(frozen=True)
class SamplingRates:
    """Fractions of instances per occlusion tier drawn into the QA review sample.

    ``min_per_tier`` instances are drawn from a tier even when its rate gives fewer (or all
    of them, when the tier has fewer).
    """

    none: float = 0.10
    partial: float = 0.20
    heavy: float = 0.40
    min_per_tier: int = 5

    def rate(self, tier: str) -> float:
        """Return the sampling rate of ``tier`` (one of :data:`OCCLUSION_TIERS`)."""
        if tier not in OCCLUSION_TIERS:
            raise ProtocolError(f"Unknown occlusion tier {tier!r}; expected one of {OCCLUSION_TIERS}.")
        return float(getattr(self, tier))


@dataclass(frozen=True)
class AnnotationProtocol:
    """The rules an annotation project fixes before it starts.

    Parameters
    ----------
    categories : tuple of Category
        The taxonomy, at least one category.
    occlusion_rule : {'visible', 'amodal'}
        Whether annotators draw only visible pixels, or also amodal (full) outlines.
    tiers : TierThresholds
        Cut-points from occluded fraction to tier.
    qa_rates : SamplingRates
        Review-sample rates per tier.
    name : str
        Name of the project / protocol, written into exports.
    """

    categories: tuple[Category, ...]
    occlusion_rule: str = "visible"
    tiers: TierThresholds = field(default_factory=TierThresholds)
    qa_rates: SamplingRates = field(default_factory=SamplingRates)
    name: str = "napari-instseg"

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        _validate(
            categories=self.categories,
            occlusion_rule=self.occlusion_rule,
            tiers=self.tiers,
            qa_rates=self.qa_rates,
            name=self.name,
            source="protocol",
        )

    @classmethod
    def default(cls) -> AnnotationProtocol:
        """Return the protocol used when none is given: one ``nucleus`` category, visible rule."""
        return cls(categories=(Category(1, "nucleus", "cell", "#ff7f0e"),))

    @property
    def category_ids(self) -> tuple[int, ...]:
        """Category ids in taxonomy order."""
        return tuple(c.id for c in self.categories)

    def category(self, category_id: int) -> Category:
        """Return the category with id ``category_id``; raise ProtocolError naming the known ids."""
        for cat in self.categories:
            if cat.id == category_id:
                return cat
        raise ProtocolError(
            f"Category id {category_id} is not in protocol {self.name!r}; known ids: {list(self.category_ids)}."
        )

    def category_by_name(self, name: str) -> Category:
        """Return the category called ``name``; raise ProtocolError naming the known names."""
        for cat in self.categories:
            if cat.name == name:
                return cat
        known = [c.name for c in self.categories]
        raise ProtocolError(f"Category {name!r} is not in protocol {self.name!r}; known: {known}.")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict; :meth:`from_dict` reads it back unchanged."""
        return {
            "name": self.name,
            "occlusion_rule": self.occlusion_rule,
            "categories": [_category_to_dict(c) for c in self.categories],
            "tiers": {"none_max": self.tiers.none_max, "partial_max": self.tiers.partial_max},
            "qa_rates": {f.name: getattr(self.qa_rates, f.name) for f in fields(SamplingRates)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "protocol") -> AnnotationProtocol:
        """Build a protocol from a dict (as written by :meth:`to_dict`), validating every field.

        Raises
        ------
        ProtocolError
            Naming ``source`` and the offending key or value.
        """
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{source}: expected a mapping, got {type(data).__name__}.")
        _reject_unknown(data, {"name", "occlusion_rule", "categories", "tiers", "qa_rates"}, source)
        if "categories" not in data:
            raise ProtocolError(f"{source}: missing key 'categories' (a list of categories).")
        categories = _categories_from(data["categories"], source)
        tiers = _sub_dataclass(TierThresholds, data.get("tiers", {}), f"{source}.tiers")
        rates = _sub_dataclass(SamplingRates, data.get("qa_rates", {}), f"{source}.qa_rates")
        values = {
            "categories": categories,
            "occlusion_rule": data.get("occlusion_rule", "visible"),
            "tiers": tiers,
            "qa_rates": rates,
            "name": data.get("name", "napari-instseg"),
        }
        _validate(source=source, **values)  # first with the caller's source in messages
        return cls(**values)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the protocol as JSON (or YAML for a ``.yaml`` / ``.yml`` path), atomically."""
        target = Path(path)
        if target.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write_text(target, text)


def load_protocol(path: str | os.PathLike[str]) -> AnnotationProtocol:
    """Read a protocol from a JSON or YAML file.

    Raises
    ------
    ProtocolError
        When the file cannot be parsed or a field is invalid; the message names the file.
    """
    target = Path(path)
    raw = target.read_bytes()
    if not raw.strip():
        raise ProtocolError(f"{target}: the protocol file is empty.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{target}: not UTF-8 text (byte {exc.start}); expected a JSON or YAML protocol.") from exc
    try:
        if target.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except RecursionError as exc:
        raise ProtocolError(f"{target}: cannot parse protocol file: nested too deeply.") from exc
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, int digit limits
        raise ProtocolError(f"{target}: cannot parse protocol file: {exc}") from exc
    return AnnotationProtocol.from_dict(data, source=str(target))


def _category_to_dict(cat: Category) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cat.id, "name": cat.name, "supercategory": cat.supercategory}
    if cat.color is not None:
        out["color"] = cat.color
    return out


def _reject_unknown(data: Mapping[str, Any], known: set[str], source: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProtocolError(f"{source}: unknown key(s) {unknown}; allowed keys: {sorted(known)}.")


def _categories_from(raw: Any, source: str) -> tuple[Category, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise ProtocolError(f"{source}.categories: expected a list, got {type(raw).__name__}.")
    out = []
    for i, item in enumerate(raw):
        where = f"{source}.categories[{i}]"
        if not isinstance(item, Mapping):
            raise ProtocolError(f"{where}: expected a mapping, got {type(item).__name__}.")
        _reject_unknown(item, {"id", "name", "supercategory", "color"}, where)
        for key in ("id", "name"):
            if key not in item:
                raise ProtocolError(f"{where}: missing key {key!r}.")
        out.append(
            Category(
                id=item["id"],
                name=item["name"],
                supercategory=item.get("supercategory", "") or "",
                color=item.get("color"),
            )
        )
    return tuple(out)


def _sub_dataclass(cls: type, raw: Any, source: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{source}: expected a mapping, got {type(raw).__name__}.")
    _reject_unknown(raw, {f.name for f in fields(cls)}, source)
    return cls(**raw)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(
    *,
    categories: tuple[Category, ...],
    occlusion_rule: str,
    tiers: TierThresholds,
    qa_rates: SamplingRates,
    name: str,
    source: str,
) -> None:
    _validate_categories(tuple(categories), source)
    if occlusion_rule not in OCCLUSION_RULES:
        raise ProtocolError(f"{source}.occlusion_rule: {occlusion_rule!r} is not one of {OCCLUSION_RULES}.")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{source}.name: expected a non-empty string, got {name!r}.")
    _validate_tiers(tiers, f"{source}.tiers")
    _validate_rates(qa_rates, f"{source}.qa_rates")


def _validate_categories(categories: tuple[Category, ...], source: str) -> None:
    if not categories:
        raise ProtocolError(f"{source}.categories: the taxonomy needs at least one category.")
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for i, cat in enumerate(categories):
        where = f"{source}.categories[{i}]"
        if not isinstance(cat, Category):
            raise ProtocolError(f"{where}: expected a Category, got {type(cat).__name__}.")
        if not isinstance(cat.id, (int, np.integer)) or isinstance(cat.id, bool) or cat.id < 0:
            raise ProtocolError(f"{where}.id: expected a non-negative integer (COCO ids from 0), got {cat.id!r}.")
        if cat.id >= 2**63:
            raise ProtocolError(f"{where}.id: {cat.id} does not fit a 64-bit integer (COCO ids from 0 to 2**63 - 1).")
        if not isinstance(cat.name, str) or not cat.name.strip():
            raise ProtocolError(f"{where}.name: expected a non-empty string, got {cat.name!r}.")
        if not isinstance(cat.supercategory, str):
            raise ProtocolError(f"{where}.supercategory: expected a string, got {cat.supercategory!r}.")
        if cat.color is not None and not (isinstance(cat.color, str) and _COLOR_RE.match(cat.color)):
            raise ProtocolError(f"{where}.color: expected '#rrggbb' or null, got {cat.color!r}.")
        if cat.id in seen_ids:
            raise ProtocolError(f"{where}.id: duplicate category id {cat.id}.")
        if cat.name in seen_names:
            raise ProtocolError(f"{where}.name: duplicate category name {cat.name!r}.")
        seen_ids.add(int(cat.id))
        seen_names.add(cat.name)


def _validate_tiers(tiers: TierThresholds, source: str) -> None:
    if not (_is_number(tiers.none_max) and _is_number(tiers.partial_max)):
        raise ProtocolError(f"{source}: cut-points must be finite numbers, got {tiers}.")
    if not 0.0 <= tiers.none_max < tiers.partial_max < 1.0:
        raise ProtocolError(
            f"{source}: expected 0 <= none_max < partial_max < 1 (occluded fractions), "
            f"got none_max={tiers.none_max}, partial_max={tiers.partial_max}."
        )


def _validate_rates(rates: SamplingRates, source: str) -> None:
    for tier in OCCLUSION_TIERS:
        value = getattr(rates, tier)
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise ProtocolError(f"{source}.{tier}: expected a rate in [0, 1], got {value!r}.")
    minimum = rates.min_per_tier
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
        raise ProtocolError(f"{source}.min_per_tier: expected an integer >= 0, got {minimum!r}.")


def __getattr__(name: str) -> Any:
    """``Protocol``: the deprecated name of :class:`AnnotationProtocol` (it clashed with
    :class:`typing.Protocol`); still importable, with a :class:`DeprecationWarning`."""
    if name == "Protocol":
        warnings.warn(
            "napari_instseg.core.protocol.Protocol is deprecated (it clashes with typing.Protocol); "
            "use AnnotationProtocol instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return AnnotationProtocol
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
