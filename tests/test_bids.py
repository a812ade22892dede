"""BIDS names in and out, checked with the specification's rules (bids-validator's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skullstrip_lib import bids
from skullstrip_lib.errors import InvalidInputError, MissingFileError, SkullstripError


def dataset(root: Path, files: list[str], kind: str = "raw") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    description = {"Name": "test", "BIDSVersion": "1.9.0"}
    if kind == "derivative":
        description["DatasetType"] = "derivative"
    (root / bids.DESCRIPTION).write_text(json.dumps(description))
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # the names are what is checked here
    return root


def test_find_t1w_lists_the_t1w_scans_with_their_entities(tmp_path):
    root = dataset(tmp_path / "raw", [
        "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T1w.json",
        "sub-01/anat/sub-01_T2w.nii.gz", "sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp_run-2_T1w.nii",
        "sub-02/ses-pre/func/sub-02_ses-pre_task-rest_bold.nii.gz", "README"])
    scans = bids.find_t1w(root)
    assert [s.relative for s in scans] == [
        "sub-01/anat/sub-01_T1w.nii.gz", "sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp_run-2_T1w.nii"]
    assert scans[1].entities == {"subject": "02", "session": "pre", "datatype": "anat",
                                 "acquisition": "mp", "run": "2", "suffix": "T1w",
                                 "extension": ".nii"}
    assert bids.is_bids_dataset(root) and not bids.is_bids_dataset(tmp_path)


@pytest.mark.parametrize("name", [
    "sub-0_1/anat/sub-0_1_T1w.nii.gz",  # an underscore in a label
    "sub-01/anat/sub-02_T1w.nii.gz",  # the file names another subject than its folder
    "sub-01/anat/sub-01_foo-x_T1w.nii.gz",  # no such entity
    "sub-01/ses-1/anat/sub-01_T1w.nii.gz",  # the session folder without the session entity
])
def test_a_name_that_breaks_the_bids_rules_is_refused(tmp_path, name):
    root = dataset(tmp_path / "raw", [name])
    with pytest.raises(InvalidInputError, match=rf"^{root / name}: not a valid BIDS name for a "
                                                "T1w scan"):
        bids.find_t1w(root)


def test_a_derivatives_dataset_or_one_without_t1w_is_no_input(tmp_path):
    root = dataset(tmp_path / "deriv", ["sub-01/anat/sub-01_desc-brain_T1w.nii.gz"],
                   kind="derivative")
    with pytest.raises(InvalidInputError, match="dataset_description.json: is a BIDS "
                                                "derivatives dataset, not raw scans"):
        bids.find_t1w(root)
    empty = dataset(tmp_path / "empty", ["sub-01/anat/sub-01_T2w.nii.gz"])
    with pytest.raises(MissingFileError, match="a BIDS dataset without T1w scans"):
        bids.find_t1w(empty)
    (empty / bids.DESCRIPTION).write_text("[1, 2]")
    with pytest.raises(InvalidInputError, match="not a BIDS description"):
        bids.find_t1w(empty)


def test_derivative_paths_keep_the_entities_and_add_desc_brain(tmp_path):
    root = dataset(tmp_path / "raw", ["sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp_run-2_T1w.nii"])
    [scan] = bids.find_t1w(root)
    paths = bids.derivative_paths(scan, tmp_path / "out")
    assert {k: p.relative_to(tmp_path / "out").as_posix() for k, p in paths.items()} == {
        "brainmask": "sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp_run-2_desc-brain_mask.nii.gz",
        "brain": "sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp_run-2_desc-brain_T1w.nii.gz",
        "sidecar": "sub-02/ses-pre/anat/sub-02_ses-pre_acq-mp_run-2_desc-brain_mask.json",
        "qc": "sub-02/figures/sub-02_ses-pre_acq-mp_run-2_desc-brain_mask.png",
    }
    for key in ("brainmask", "brain"):
        assert bids.is_valid_derivative(paths[key].relative_to(tmp_path / "out").as_posix())


def test_the_description_says_who_made_the_derivatives(tmp_path):
    description = bids.dataset_description("default", 0.45)
    assert description["DatasetType"] == "derivative"
    assert description["BIDSVersion"] == bids.bids_version()
    [by] = description["GeneratedBy"]
    assert by["Name"] == "skullstrip" and "default" in by["Description"]
    # skullstrip's own output folder may be written again, another dataset's may not.
    out = tmp_path / "out"
    out.mkdir()
    (out / bids.DESCRIPTION).write_text(json.dumps(description))
    bids.check_output_root(out, [tmp_path / "raw"])
    (out / bids.DESCRIPTION).write_text(json.dumps({"Name": "x", "DatasetType": "raw"}))
    with pytest.raises(SkullstripError, match="another dataset is already here"):
        bids.check_output_root(out, [tmp_path / "raw"])


@pytest.mark.parametrize(("out", "allowed"), [
    (".", False), ("sub-01", False), ("derivatives", False), ("derivatives/skullstrip", True),
    ("../elsewhere", True),
])
def test_results_go_beside_or_in_derivatives_never_among_raw_files(tmp_path, out, allowed):
    raw = tmp_path / "raw"
    raw.mkdir()
    if allowed:
        bids.check_output_root(raw / out, [raw])
    else:
        with pytest.raises(SkullstripError, match="inside the input BIDS dataset"):
            bids.check_output_root(raw / out, [raw])
