"""N4, the model grid and its inverse, normalisation, and one subject end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from skullstrip_lib import metrics
from skullstrip_lib import preprocess as pp
from skullstrip_lib.errors import InvalidArgumentError, InvalidInputError, SkullstripError
from skullstrip_lib.io import load_scan, save_like
from skullstrip_lib.synth import make_head

SMALL = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}


# --------------------------------------------------------------------------- N4
@pytest.fixture(scope="module")
def clean_head():
    """A head with no bias field and little noise, plus a known smooth bias field."""
    head = make_head(seed=11, shape=(128, 128, 96), voxel_size=(2.0, 2.0, 2.0),
                     bias_strength=0.0, noise_level=0.005, blur_mm=0.0)
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    mask = np.asarray(head.brainmask.dataobj) > 0
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in data.shape], indexing="ij")
    # About +-20 %, as on a 3 T head coil.
    field = np.exp(0.2 * x - 0.15 * z + 0.1 * y * z).astype(np.float32)
    return data, mask, field


def test_n4_removes_a_known_bias_field(clean_head):
    data, brain, field = clean_head
    biased = data * field
    head = pp.head_mask(biased, (2.0, 2.0, 2.0))
    corrected, estimate = pp.n4_correct(biased, (2.0, 2.0, 2.0), head)
    assert corrected.shape == estimate.shape == data.shape
    # The estimated field follows the true one (up to N4's arbitrary scale) ...
    r = np.corrcoef(np.log(estimate[brain]), np.log(field[brain]))[0, 1]
    assert r > 0.93
    # ... so the corrected image is the clean one times a near constant.
    before = biased[brain] / data[brain]
    after = corrected[brain] / data[brain]
    cv = lambda v: float(np.std(v) / np.mean(v))  # noqa: E731
    assert cv(before) > 0.06
    assert cv(after) < 0.4 * cv(before)


def test_n4_shrinks_to_about_8_mm_whatever_the_voxel_size(clean_head):
    assert pp.n4_shrink_factors((1.0, 1.0, 1.0)) == (8, 8, 8)
    assert pp.n4_shrink_factors((0.8, 1.2, 3.0)) == (10, 7, 3)
    assert pp.n4_shrink_factors((12.0, 12.0, 12.0)) == (1, 1, 1)
    # The default is the same fit as the explicit factor at this voxel size (2 mm: 4).
    data, _, field = clean_head
    biased = data * field
    head = pp.head_mask(biased, (2.0, 2.0, 2.0))
    _, default = pp.n4_correct(biased, (2.0, 2.0, 2.0), head)
    _, explicit = pp.n4_correct(biased, (2.0, 2.0, 2.0), head, shrink_factor=4)
    np.testing.assert_allclose(default, explicit, rtol=1e-5)


def test_n4_field_on_the_shrunken_grid_matches_the_full_resolution_one(clean_head):
    # Evaluating the B-spline on the 8 mm fitting grid and interpolating it
    # linearly (the default) instead of at every voxel changes the log field by
    # far less than N4's own error (a few hundredths here).
    data, brain, field = clean_head
    biased = data * field
    head = pp.head_mask(biased, (2.0, 2.0, 2.0))
    _, fast = pp.n4_correct(biased, (2.0, 2.0, 2.0), head)
    _, full = pp.n4_correct(biased, (2.0, 2.0, 2.0), head, full_resolution_field=True)
    diff = np.abs(np.log(fast[brain]) - np.log(full[brain]))
    assert np.median(diff) < 0.005 and diff.max() < 0.03


def test_n4_needs_a_non_empty_mask(clean_head):
    data, _, _ = clean_head
    with pytest.raises(ValueError, match="non-empty mask"):
        pp.n4_correct(data, (2.0, 2.0, 2.0), np.zeros(data.shape, bool))


# --------------------------------------------------------------------------- N4 through nipype/ANTs
FAKE_N4 = r"""#!{python}
# Stand-in for ANTs' N4BiasFieldCorrection: parses the command line nipype builds
# and runs the same algorithm with SimpleITK, so the wrapper can be tested without ANTs.
import sys, json, pathlib, re
import nibabel as nib, numpy as np
from skullstrip_lib.preprocess import n4_correct
args = sys.argv[1:]
pathlib.Path({log!r}).write_text(json.dumps(args))
line = " ".join(args)
opt = {{args[i]: args[i + 1] for i in range(0, len(args) - 1) if args[i].startswith("-")}}
img = nib.load(opt["--input-image"])
mask = np.asarray(nib.load(opt["--mask-image"]).dataobj) > 0 if "--mask-image" in opt else None
out = re.search(r"--output \[? *([^ ,\]]+)(?:, *([^ \]]+))?", line).groups()
out = [o for o in out if o]
corr, field = n4_correct(np.asarray(img.dataobj, np.float32), img.header.get_zooms(), mask,
                         shrink_factor=int(opt["--shrink-factor"]))
nib.save(nib.Nifti1Image(corr, img.affine), out[0])
if len(out) > 1:
    nib.save(nib.Nifti1Image(field, img.affine), out[1])
"""


def test_n4_through_nipype_and_ants(clean_head, tmp_path, monkeypatch):
    data, brain, field = clean_head
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.json"
    exe = bindir / "N4BiasFieldCorrection"
    exe.write_text(FAKE_N4.format(python=sys.executable, log=str(log)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    src, msk = tmp_path / "in.nii.gz", tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(data * field, aff), src)
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), msk)

    out = pp.n4_ants(src, tmp_path / "out.nii.gz", mask_file=msk, bias_file=tmp_path / "b.nii.gz",
                     shrink_factor=3, n_iterations=(20, 20))
    argv = " ".join(json.loads(log.read_text()))
    assert "--shrink-factor 3" in argv and "[ 20x20, 0.001 ]" in argv
    assert "--bspline-fitting [ 200" in argv and "-d 3" in argv
    est = np.asarray(nib.load(tmp_path / "b.nii.gz").dataobj)
    # The bias image written by the program came back through nipype's outputs.
    assert np.corrcoef(np.log(est[brain]), np.log(field[brain]))[0, 1] > 0.85
    assert nib.load(out).shape == data.shape


def test_n4_ants_missing_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SkullstripError, match="N4BiasFieldCorrection .ANTs. not found"):
        pp.n4_ants(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")


# --------------------------------------------------------------------------- the model grid
def test_round_trip_full_size_mask(full_head, tmp_path):
    """A mask taken to the 2 mm model grid and back lands on the original grid, Dice >= 0.99."""
    t1w, mask_path = full_head
    scan = load_scan(t1w)
    mask = load_scan(mask_path).data > 0.5
    head = pp.head_mask(scan.data, scan.zooms)
    grid = pp.fit_model_grid(scan.affine, scan.image.shape, head)
    assert grid.shape == (96, 128, 160) and grid.spacing == (2.0, 2.0, 2.0)

    fraction = pp.to_model_grid(mask.astype(np.float32), grid)
    assert fraction.shape == (96, 128, 160) and fraction.min() >= 0 and fraction.max() <= 1
    # The whole brain is inside the model grid.
    assert fraction.sum() * 8 == pytest.approx(mask.sum(), rel=0.01)
    back = pp.from_model_grid(fraction, grid) >= 0.5
    out = save_like(back, scan, tmp_path / "mask_back.nii.gz", dtype=np.uint8)

    written, original = nib.load(out), nib.load(mask_path)
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine)
    fraction_dice = metrics.dice(np.asarray(written.dataobj) > 0, np.asarray(original.dataobj) > 0)
    assert fraction_dice >= 0.99

    # Nearest neighbour both ways is measurably worse: the reason the book uses fractions.
    nearest = pp.from_model_grid(pp.to_model_grid(mask.astype(np.float32), grid, order=0), grid,
                                 order=0) >= 0.5
    assert metrics.dice(nearest, mask) < fraction_dice


@pytest.mark.parametrize("geometry", [
    {"orientation": "LPS"},
    {"orientation": "PIR", "voxel_size": (1.2, 1.0, 1.5), "shape": (160, 200, 150)},
    {"oblique_deg": (8.0, 0.0, 12.0)},
])
def test_round_trip_odd_geometries(geometry):
    kwargs = {"shape": (128, 128, 96), "voxel_size": (2.0, 2.0, 2.0), **geometry}
    head = make_head(seed=5, **kwargs)
    mask = np.asarray(head.brainmask.dataobj) > 0
    affine = head.t1w.affine
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    grid = pp.fit_model_grid(affine, data.shape, pp.head_mask(data, head.t1w.header.get_zooms()))
    back = pp.from_model_grid(pp.to_model_grid(mask.astype(np.float32), grid), grid) >= 0.5
    assert back.shape == mask.shape
    assert metrics.dice(back, mask) >= 0.97


def test_grid_follows_the_head_not_the_origin():
    head = make_head(seed=2, **SMALL)
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    hm = pp.head_mask(data, (4.0, 4.0, 4.0))
    grid = pp.fit_model_grid(head.t1w.affine, data.shape, hm, shape=(40, 48, 56), spacing=4.0)
    moved = head.t1w.affine.copy()
    moved[:3, 3] += [60.0, -45.0, 30.0]  # same voxels, different scanner origin
    grid2 = pp.fit_model_grid(moved, data.shape, hm, shape=(40, 48, 56), spacing=4.0)
    np.testing.assert_allclose(grid2.affine[:3, 3] - grid.affine[:3, 3], [60.0, -45.0, 30.0])
    np.testing.assert_allclose(pp.to_model_grid(data, grid), pp.to_model_grid(data, grid2),
                               atol=1e-3)
    # The head's centre of mass is close to the grid's centre.
    com = np.array(np.nonzero(pp.to_model_grid(hm.astype(np.float32), grid) > 0.5)).mean(axis=1)
    assert np.all(np.abs(com - (np.array(grid.shape) - 1) / 2) < 0.15 * np.array(grid.shape))


def test_long_field_of_view_keeps_the_top_of_the_head():
    # A 2 mm grid of 40 voxels (80 mm) along S-I cannot hold the head: the top is kept.
    head = make_head(seed=2, **SMALL)
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    hm = pp.head_mask(data, (4.0, 4.0, 4.0))
    grid = pp.fit_model_grid(head.t1w.affine, data.shape, hm, shape=(96, 128, 40), spacing=2.0)
    inside = pp.to_model_grid(hm.astype(np.float32), grid) > 0.5
    assert not inside[:, :, -2:].any()  # the margin above the head
    assert inside[:, :, -8:].any()  # but the head starts right below it


def test_grid_round_trips_through_json():
    g = pp.ModelGrid((4, 5, 6), np.diag([2.0, 2.0, 2.0, 1.0]), (8, 9, 10), np.eye(4))
    g2 = pp.ModelGrid.from_dict(json.loads(json.dumps(g.to_dict())))
    assert g2.shape == g.shape and g2.source_shape == g.source_shape
    np.testing.assert_array_equal(g2.affine, g.affine)


# --------------------------------------------------------------------------- normalisation
def test_normalization():
    rng = np.random.default_rng(0)
    data = rng.normal(500, 100, (20, 20, 20)).astype(np.float32)
    data[0, 0, 0] = 1e6  # one outlier must not set the scale
    mask = np.ones(data.shape, bool)
    mask[:2] = False
    z = pp.normalize_intensity(data, mask, method="zscore")
    assert abs(z[mask].mean()) < 1e-4 and z[mask].std() == pytest.approx(1.0, abs=1e-4)
    assert z.max() < 4
    m = pp.normalize_intensity(data, mask, method="minmax", clip_percentiles=(1, 99))
    assert m.min() == 0.0 and m.max() == 1.0
    assert np.mean(m[mask] == 1.0) == pytest.approx(0.01, abs=0.002)
    with pytest.raises(InvalidArgumentError, match="^method must be one of 'zscore' or 'minmax', "
                                                   "got 'rescale_0_255'$"):
        pp.normalize_intensity(data, mask, method="rescale_0_255")
    with pytest.raises(ValueError, match="constant"):
        pp.normalize_intensity(np.ones((4, 4, 4)), None)


# --------------------------------------------------------------------------- one subject
@pytest.fixture
def small_subject(tmp_path):
    head = make_head(seed=4, **SMALL)
    t1w, mask = tmp_path / "t1w.nii.gz", tmp_path / "mask.nii.gz"
    nib.save(head.t1w, t1w)
    nib.save(head.brainmask, mask)
    return t1w, mask


SMALL_CONFIG = pp.PreprocessConfig(shape=(40, 48, 56), spacing=4.0, n4_iterations=(20, 20))


def test_preprocess_subject_writes_model_grid_files(small_subject, tmp_path):
    t1w, mask = small_subject
    out = tmp_path / "out"
    res = pp.preprocess_subject("sub-01", t1w, out, mask, SMALL_CONFIG)
    assert res["status"] == "done"
    img, m = nib.load(res["t1w"]), nib.load(res["brainmask"])
    assert img.shape == m.shape == (40, 48, 56)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(img.header.get_zooms(), (4.0, 4.0, 4.0))
    assert m.get_data_dtype() == np.uint8 and set(np.unique(m.dataobj)) == {0, 1}
    meta = json.loads((out / "sub-01" / "sub-01_preproc.json").read_text())
    grid = pp.ModelGrid.from_dict(meta["grid"])
    np.testing.assert_allclose(grid.affine, img.affine)
    assert meta["original"]["shape"] == [64, 64, 48]
    # The brain mask on the model grid maps back onto the original mask.
    back = pp.from_model_grid(np.asarray(m.dataobj, np.float32), grid) >= 0.5
    assert metrics.dice(back, np.asarray(nib.load(mask).dataobj) > 0) > 0.85

    # Same inputs and parameters: skipped. Other parameters: refused unless overwrite.
    assert pp.preprocess_subject("sub-01", t1w, out, mask, SMALL_CONFIG)["status"] == "skipped"
    other = pp.PreprocessConfig(shape=(40, 48, 56), spacing=4.0, normalization="minmax",
                                n4="none")
    with pytest.raises(SkullstripError, match="other inputs or parameters"):
        pp.preprocess_subject("sub-01", t1w, out, mask, other)
    res = pp.preprocess_subject("sub-01", t1w, out, mask, other, overwrite=True)
    assert res["status"] == "done"
    assert np.asarray(nib.load(res["t1w"]).dataobj).min() == 0.0  # min-max now


def test_preprocess_subject_bad_input_writes_nothing(small_subject, tmp_path):
    t1w, _ = small_subject
    bad = tmp_path / "nan.nii.gz"
    data = np.asarray(nib.load(t1w).dataobj, np.float32)
    data[10, 10, 10] = np.nan
    nib.save(nib.Nifti1Image(data, nib.load(t1w).affine), bad)
    with pytest.raises(InvalidInputError, match="nan.nii.gz: contains 1 NaN"):
        pp.preprocess_subject("sub-02", bad, tmp_path / "out", None, SMALL_CONFIG)
    assert not (tmp_path / "out" / "sub-02").exists()
    wrong = tmp_path / "wrong_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), wrong)
    with pytest.raises(InvalidInputError, match="does not match image shape"):
        pp.preprocess_subject("sub-03", t1w, tmp_path / "out", wrong, SMALL_CONFIG)
    assert not (tmp_path / "out" / "sub-03").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="n4 must be"):
        pp.PreprocessConfig(n4="fsl")
    with pytest.raises(ValueError, match="normalization must be"):
        pp.PreprocessConfig(normalization="zscore255")
    with pytest.raises(ValueError, match="interpolation must be one of linear, cubic, nearest"):
        pp.PreprocessConfig(interpolation="bspline")
    # A model description written before the field existed reads as linear.
    old = {k: v for k, v in pp.PreprocessConfig().to_dict().items() if k != "interpolation"}
    assert pp.PreprocessConfig.from_dict(old).interpolation == "linear"


BAD_SETTINGS = {
    "n4_iterations": [[], [0, 10], [10, 2.5], "50", None],
    "n4_shrink": [0, -2, 1.5, True],
    "n4_convergence": [-1e-3, float("nan"), "tight"],
    "clip_percentiles": [[99.5, 0.5], [0, 101], [1], None],
    "spacing": [0, float("inf"), "2"],
    "shape": [[96, 128, 7], [96.0, 128, 160]],
}


@pytest.mark.parametrize(("setting", "value"),
                         [(k, v) for k, values in BAD_SETTINGS.items() for v in values])
def test_config_validation_names_the_setting(setting, value):
    # As a config.yaml or model.json gives them: a ValueError naming the setting, before
    # ITK or scipy sees the value (n4_iterations: [] was an ITK RuntimeError traceback).
    plain = {**pp.PreprocessConfig().to_dict(), setting: value}
    with pytest.raises(ValueError, match=rf"(preprocessing setting {setting} must be|bad model "
                                         r"grid)"):
        pp.PreprocessConfig.from_dict(plain)


def test_prepare_input_interpolation_and_no_normalization(small_subject):
    t1w, _ = small_subject
    scan = load_scan(t1w)
    raw = dataclasses.replace(SMALL_CONFIG, normalization="none", n4="none")
    linear, grid = pp.prepare_input(scan, raw)
    nearest, grid_n = pp.prepare_input(scan, dataclasses.replace(raw, interpolation="nearest"))
    np.testing.assert_array_equal(grid.affine, grid_n.affine)  # same grid, other values
    # No normalisation: the scan's own intensities (the resampling's, with its smoothing).
    np.testing.assert_allclose(linear, pp.to_model_grid(scan.data, grid, cval=scan.background),
                               rtol=1e-6)
    # Nearest neighbour copies scan voxels: every value is one of the scan's.
    assert set(np.unique(nearest).tolist()) <= set(np.unique(scan.data).tolist())
    assert not np.array_equal(nearest, linear)
    np.testing.assert_array_equal(
        nearest, pp.to_model_grid(scan.data, grid, order=0, cval=scan.background))
    cubic, _ = pp.prepare_input(scan, dataclasses.replace(raw, interpolation="cubic"))
    assert np.corrcoef(cubic.ravel(), linear.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("geometry", [{}, {"orientation": "LPS", "oblique_deg": (5.0, 0.0, 9.0),
                                           "voxel_size": (2.2, 2.0, 2.4)}])
def test_from_model_grid_support_gives_the_same_mask(geometry):
    kwargs = {"shape": (96, 112, 80), "voxel_size": (2.0, 2.0, 2.0), **geometry}
    head = make_head(seed=8, **kwargs)
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    grid = pp.fit_model_grid(head.t1w.affine, data.shape,
                             pp.head_mask(data, head.t1w.header.get_zooms()),
                             shape=(48, 64, 80), spacing=4.0)
    mask = np.asarray(head.brainmask.dataobj, dtype=np.float32)
    prob = pp.to_model_grid(mask, grid)
    full = pp.from_model_grid(prob, grid) >= 0.5
    boxed = pp.from_model_grid(prob, grid, support=0.5) >= 0.5
    np.testing.assert_array_equal(boxed, full)
    assert not pp.from_model_grid(np.zeros(grid.shape, np.float32), grid, support=0.5).any()


# --------------------------------------------------------------------------- teaching helpers


def test_n4_ants_command_without_ants(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ANTs, as on Colab
    src = tmp_path / "in.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), src)
    cmd = pp.n4_ants_command(src, tmp_path / "out.nii", mask_file=src,
                             bias_file=tmp_path / "bias.nii", n_iterations=(20, 10))
    assert cmd.startswith("N4BiasFieldCorrection ")
    for part in ("-d 3", f"--input-image {src}", f"--mask-image {src}", "--shrink-factor 4",
                 "[ 20x10, 0.001 ]", "--bspline-fitting [ 200 ]",
                 f"--output [ {tmp_path / 'out.nii'}, {tmp_path / 'bias.nii'} ]"):
        assert part in cmd, part




# --------------------------------------------------------------------------- subject ids (issue 18)
@pytest.mark.parametrize("subject", ["../ESCAPED", "", ".", "..", "/data/A1/sub-A1_ses-NFB3",
                                     "A1/sub", "A 1", "A1\n", "A1.nii"])
def test_output_paths_take_a_label_never_a_path(tmp_path, subject):
    with pytest.raises(InvalidInputError, match=rf"^subject {re.escape(repr(subject))} is not "
                                                r"a subject id \(letters, digits, '-' and '_' "
                                                r"only; never a path\)"):
        pp.output_paths(tmp_path / "out", subject)


def test_output_paths_of_a_label_lie_inside_the_output_folder(tmp_path):
    paths = pp.output_paths(tmp_path / "out", "A00028185_b-2")
    assert {k: p.relative_to(tmp_path / "out").as_posix() for k, p in paths.items()} == {
        "t1w": "A00028185_b-2/A00028185_b-2_T1w.nii.gz",
        "brainmask": "A00028185_b-2/A00028185_b-2_brainmask.nii.gz",
        "json": "A00028185_b-2/A00028185_b-2_preproc.json"}


def test_a_subject_whose_output_is_its_own_raw_scan_is_refused(small_subject, tmp_path):
    # A valid label, the raw scan's own stem, with -o the data folder: the output path would be
    # the raw scan, which the run used to delete before writing.
    import shutil

    t1w, _ = small_subject
    folder = tmp_path / "data" / "sub-A1_ses-NFB3"
    folder.mkdir(parents=True)
    raw = Path(shutil.copy(t1w, folder / "sub-A1_ses-NFB3_T1w.nii.gz"))
    before = raw.read_bytes()
    with pytest.raises(InvalidInputError, match=rf"^{raw}: subject sub-A1_ses-NFB3: is also "
                                                "one of its own outputs"):
        pp.preprocess_subject("sub-A1_ses-NFB3", raw, tmp_path / "data", None, SMALL_CONFIG)
    assert raw.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [raw.name]
