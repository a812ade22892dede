"""BIDS datasets in and out: the T1w scans of a raw dataset, the derivatives ``predict`` writes.

A BIDS dataset keeps each subject's anatomical scans in
``sub-<label>/[ses-<label>/]anat/`` under names built from *entities*
(``sub-01_ses-2_acq-mprage_run-1_T1w.nii.gz``). :func:`find_t1w` lists a raw
dataset's T1w scans; :func:`derivative_paths` names a scan's results the way
the BIDS-Derivatives specification does, in a separate dataset
(``sub-01_ses-2_acq-mprage_run-1_desc-brain_mask.nii.gz`` and
``..._desc-brain_T1w.nii.gz`` with a JSON sidecar), so that results never sit
among the inputs.

Names are checked against the specification's own rules rather than a
hand-written pattern: bids-validator's :class:`~bids_validator.BIDSValidator`
for the raw files, and the derivative rules of the BIDS schema
(``bidsschematools``, which bids-validator is built on) for ours.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from . import __version__
from .errors import InvalidInputError, MissingFileError, SkullstripError

__all__ = [
    "DESCRIPTION",
    "BidsScan",
    "dataset_description",
    "derivative_paths",
    "find_t1w",
    "is_bids_dataset",
    "is_valid_derivative",
]

DESCRIPTION = "dataset_description.json"
T1W_PATTERNS = ("sub-*/anat/*_T1w.nii*", "sub-*/ses-*/anat/*_T1w.nii*")
"""Where a raw dataset keeps its T1w scans (``.nii`` or ``.nii.gz``)."""


@dataclass(frozen=True)
class BidsScan:
    """A T1w scan of a raw BIDS dataset.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    root : pathlib.Path
        The dataset's folder.
    relative : str
        ``path`` relative to ``root``, POSIX style (``sub-01/anat/sub-01_T1w.nii.gz``).
    entities : dict
        Parsed by bids-validator: ``subject``, ``session`` (if any), ``suffix``, ...
    """

    path: Path
    root: Path
    relative: str
    entities: dict


@lru_cache(maxsize=1)
def _validator():
    from bids_validator import BIDSValidator

    return BIDSValidator()


@lru_cache(maxsize=1)
def _derivative_rules() -> tuple[re.Pattern, ...]:
    import logging

    import bidsschematools.rules
    import bidsschematools.schema

    logging.getLogger("bidsschematools").setLevel(logging.WARNING)
    schema = bidsschematools.schema.load_schema()
    rules = bidsschematools.rules.regexify_filename_rules(schema.rules.files.deriv,
                                                          schema, level=2)
    return tuple(re.compile(rule["regex"]) for rule in rules)


def bids_version() -> str:
    """The BIDS version of the specification the names are checked against."""
    import bidsschematools.schema

    return str(bidsschematools.schema.load_schema().bids_version)


def is_bids_dataset(folder: str | os.PathLike) -> bool:
    """True when ``folder`` is a BIDS dataset: it holds ``dataset_description.json``."""
    return (Path(folder) / DESCRIPTION).is_file()


def _read_description(root: Path) -> dict:
    path = root / DESCRIPTION
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(path, f"not a readable BIDS description ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(path, "not a BIDS description (a JSON object is expected)")
    return data


def find_t1w(root: str | os.PathLike) -> list[BidsScan]:
    """The T1w scans of a raw BIDS dataset, ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``, sorted.

    Parameters
    ----------
    root : path-like
        The dataset's folder (it holds ``dataset_description.json``).

    Returns
    -------
    list of BidsScan

    Raises
    ------
    InvalidInputError
        The folder is a derivatives dataset, or a file's name breaks the BIDS
        rules (the message names it).
    MissingFileError
        No T1w scan.
    """
    root = Path(root)
    if _read_description(root).get("DatasetType") == "derivative":
        raise InvalidInputError(root / DESCRIPTION, "is a BIDS derivatives dataset, not raw "
                                                    "scans: give the raw dataset")
    found = sorted({p for pattern in T1W_PATTERNS for p in root.glob(pattern)
                    if not p.name.startswith(".") and p.name.endswith((".nii", ".nii.gz"))})
    if not found:
        raise MissingFileError(f"{root}: a BIDS dataset without T1w scans (none matches "
                               "sub-*/[ses-*/]anat/*_T1w.nii[.gz])")
    scans = []
    for path in found:
        relative = path.relative_to(root).as_posix()
        entities = _validator().parse("/" + relative)
        if entities.get("suffix") != "T1w":
            raise InvalidInputError(path, "not a valid BIDS name for a T1w scan "
                                          "(sub-<label>[_ses-<label>][_acq-<label>]..._T1w"
                                          ".nii[.gz], alphanumeric labels, in the subject's "
                                          "(and session's) anat folder)")
        scans.append(BidsScan(path, root, relative, entities))
    return scans


def is_valid_derivative(relative: str) -> bool:
    """True when a path inside a derivatives dataset follows the BIDS derivative rules.

    Examples
    --------
    >>> is_valid_derivative("sub-01/anat/sub-01_desc-brain_mask.nii.gz")
    True
    >>> is_valid_derivative("sub-01/anat/sub-02_desc-brain_mask.nii.gz")  # another subject
    False
    """
    return any(rule.fullmatch(relative) for rule in _derivative_rules())


def derivative_paths(scan: BidsScan, out_root: str | os.PathLike) -> dict[str, Path]:
    """Where a scan's results go in the derivatives dataset ``out_root``.

    The scan's entities are kept and ``desc-brain`` is added:
    ``sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz`` gives ``brainmask``
    ``sub-01/ses-2/anat/sub-01_ses-2_desc-brain_mask.nii.gz``, ``brain``
    ``..._desc-brain_T1w.nii.gz``, ``sidecar`` ``..._desc-brain_mask.json``
    and ``qc`` ``sub-01/figures/sub-01_ses-2_desc-brain_mask.png`` (figures
    are kept out of ``anat``, as fMRIPrep does).

    Raises
    ------
    InvalidInputError
        The derived names would break the BIDS derivative rules.
    """
    rel = PurePosixPath(scan.relative)
    prefix = re.sub(r"_T1w\.nii(\.gz)?$", "", rel.name)
    folder = Path(out_root, *rel.parent.parts)
    names = {"brainmask": f"{prefix}_desc-brain_mask.nii.gz",
             "brain": f"{prefix}_desc-brain_T1w.nii.gz"}
    for name in names.values():
        if not is_valid_derivative((rel.parent / name).as_posix()):
            raise InvalidInputError(scan.path, f"its result {name} would not be a valid "
                                               "BIDS derivative name")
    return {
        "brainmask": folder / names["brainmask"],
        "brain": folder / names["brain"],
        "sidecar": folder / f"{prefix}_desc-brain_mask.json",
        "qc": Path(out_root, rel.parts[0], "figures", f"{prefix}_desc-brain_mask.png"),
    }


def dataset_description(model: str, threshold: float) -> dict:
    """The ``dataset_description.json`` of the derivatives dataset ``predict`` writes."""
    return {
        "Name": "skullstrip brain masks",
        "BIDSVersion": bids_version(),
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "skullstrip",
            "Version": __version__,
            "Description": f"brain extraction with the model {model} (threshold {threshold:g})",
        }],
    }


def check_output_root(out_root: str | os.PathLike, inputs: list[Path]) -> None:
    """Refuse an output folder that is, or lies inside, an input dataset, or is another dataset.

    Results may go in ``<dataset>/derivatives/<name>`` (the BIDS convention),
    never among the raw files; an existing description in ``out_root`` must be
    one :func:`dataset_description` wrote.
    """
    out = Path(os.path.realpath(out_root))
    for root in inputs:
        real = Path(os.path.realpath(root))
        if out == real or (real in out.parents and (real / "derivatives") not in out.parents):
            raise SkullstripError(f"{out_root}: inside the input BIDS dataset {root}: results "
                                  f"go in a derivatives dataset, e.g. "
                                  f"{root / 'derivatives' / 'skullstrip'}")
    if (Path(out_root) / DESCRIPTION).exists():
        data = _read_description(Path(out_root))
        names = [g.get("Name") for g in data.get("GeneratedBy", []) if isinstance(g, dict)]
        if data.get("DatasetType") != "derivative" or "skullstrip" not in names:
            raise SkullstripError(f"{Path(out_root) / DESCRIPTION}: another dataset is already "
                                  "here; choose an empty or skullstrip's own output folder")
