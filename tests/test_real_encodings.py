"""Scans as they arrive: intensity offsets, NaN outside the field of view, other formats,
volumes too small to be a head, and masks that cannot be a brain."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from helpers import needs_default

from skullstrip_lib import inference
from skullstrip_lib.cli import main
from skullstrip_lib.errors import ImplausibleMaskError, InputWarning, InvalidInputError
from skullstrip_lib.io import load_scan
from skullstrip_lib.metrics import dice
from skullstrip_lib.preprocess import PreprocessConfig, prepare_input
from skullstrip_lib.synth import make_head

GRID = {"shape": (128, 128, 96), "voxel_size": (2.0, 2.0, 2.0)}


@pytest.fixture(scope="module")
def head():
    """A synthetic head on a small grid: (int16 data, affine, true mask)."""
    h = make_head(5, 1, **GRID)
    return (np.asarray(h.t1w.dataobj), h.t1w.affine.copy(),
            np.asarray(h.brainmask.dataobj) > 0)


@pytest.fixture(scope="module")
def reference(head, tmp_path_factory):
    """The mask the bundled model gives for the plain NIfTI version of ``head``."""
    data, affine, _ = head
    d = tmp_path_factory.mktemp("reference")
    nib.save(nib.Nifti1Image(data, affine), d / "plain.nii.gz")
    [res] = inference.strip(d / "plain.nii.gz", d / "out", progress=False)
    return np.asarray(nib.load(res["brainmask"]).dataobj) > 0


def save(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
    return path


def mask_of(res):
    return np.asarray(nib.load(res["brainmask"]).dataobj) > 0


def fake_model(fill: float, config=None) -> inference.BrainModel:
    """A 'network' that answers ``fill`` everywhere: an empty or a whole-grid mask."""
    config = config or PreprocessConfig(shape=(48, 64, 80), spacing=4.0, n4="none")
    return inference.BrainModel("fake", config, lambda batch: np.full_like(batch, fill))


# --------------------------------------------------------------------------- 1. offsets
@needs_default
def test_mask_does_not_depend_on_intensity_offset_or_scale(head, reference, tmp_path):
    data, affine, truth = head
    assert dice(reference, truth) > 0.9
    model = inference.load_model()
    plain = prepare_input(load_scan(save(tmp_path / "plain.nii.gz", data, affine)),
                          model.config)[0]
    for name, variant in {"offset": data - 1000.0, "scaled": data * 0.01 + 5.0,
                          "zscored": (data - data.mean()) / data.std()}.items():
        path = save(tmp_path / f"{name}.nii.gz", variant, affine)
        # The network's input itself is the same (normalisation removes offset and scale) ...
        np.testing.assert_allclose(prepare_input(load_scan(path), model.config)[0], plain,
                                   atol=1e-3)
        [res] = inference.strip(path, tmp_path / "out", model, progress=False)
        assert dice(mask_of(res), reference) > 0.99, name  # ... and so is the mask
        assert 600 < res["volume_ml"] < 2600


def test_offset_scan_pads_with_its_background(head, tmp_path):
    """The padding beyond the field of view is the background (-1000), not 0."""
    data, affine, _ = head
    scan = load_scan(save(tmp_path / "offset.nii.gz", data - 1000.0, affine))
    assert scan.background == -1000.0
    config = PreprocessConfig(shape=(48, 64, 80), spacing=4.0, n4="none")
    image, _ = prepare_input(scan, config)
    plain, _ = prepare_input(load_scan(save(tmp_path / "plain.nii.gz", data, affine)), config)
    np.testing.assert_allclose(image, plain, atol=1e-3)
    # With N4 (a gain model: intensities measured from the air) too.
    config = PreprocessConfig(shape=(48, 64, 80), spacing=4.0, n4="simpleitk")
    np.testing.assert_allclose(prepare_input(scan, config)[0],
                               prepare_input(load_scan(tmp_path / "plain.nii.gz"), config)[0],
                               atol=1e-2)


@pytest.mark.parametrize(("fill", "why"), [(0.0, "the mask is empty"),
                                           (1.0, "above the adult range of 600-2600 mL")])
def test_implausible_mask_is_an_error_and_writes_nothing(head, tmp_path, fill, why):
    data, affine, _ = head
    path = save(tmp_path / "odd.nii.gz", data, affine)
    with pytest.raises(ImplausibleMaskError, match=rf"odd.nii.gz: predicted brain mask of "
                                                   rf"\d+ mL is implausible \({why}"):
        inference.strip(path, tmp_path / "out" / "new", fake_model(fill), progress=False)
    assert not (tmp_path / "out").exists()  # not even the folders strip made for its outputs
    # The opt-outs write what the model gave (a whole-grid mask also fails the head check:
    # the "brain" is mostly air).
    [res] = inference.strip(path, tmp_path / "out", fake_model(fill), progress=False,
                            check_volume=False, check_head=False)
    assert mask_of(res).any() == bool(fill)


def test_cli_reports_an_implausible_mask_in_one_line(head, tmp_path, monkeypatch, capsys):
    data, affine, _ = head
    path = save(tmp_path / "odd.nii.gz", data, affine)
    monkeypatch.setattr(inference, "load_model", lambda name: fake_model(0.0))
    out = tmp_path / "out"
    assert main(["predict", str(path), "-o", str(out), "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skullstrip predict: error: ")
    assert str(path) in lines[0] and "0 mL is implausible" in lines[0]
    assert not out.exists() or list(out.iterdir()) == []
    assert main(["predict", str(path), "-o", str(out), "-q", "--no-volume-check"]) == 0
    assert "brain 0 mL" in capsys.readouterr().out


# --------------------------------------------------------------------------- 2. NaN
@needs_default
def test_nan_outside_the_field_of_view_is_background(head, reference, tmp_path, capsys):
    data, affine, _ = head
    for name, base in {"nan": data.astype(np.float32), "nan_offset": data - 1000.0}.items():
        holey = np.asarray(base, np.float32).copy()
        holey[:12] = np.nan  # what SPM/FSL leave outside the field of view after resampling
        holey[-6:, :, :] = np.inf
        path = save(tmp_path / f"{name}.nii.gz", holey, affine)
        n = 18 * 128 * 96
        with pytest.warns(InputWarning, match=rf"{name}.nii.gz: {n} NaN or infinite voxels"):
            [res] = inference.strip(path, tmp_path / "out", progress=False)
        assert res["nonfinite"] == n
        assert dice(mask_of(res), reference) > 0.99
        brain = np.asarray(nib.load(res["brain"]).dataobj)
        assert np.isfinite(brain).all()
    # The command says so in one line, and goes on.
    code = main(["predict", str(tmp_path / "nan.nii.gz"), "-o", str(tmp_path / "cli"), "-q"])
    assert code == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skullstrip predict: warning: ")
    assert "nan.nii.gz: 221184 NaN or infinite voxels (14.1%) treated as background" in err[0]


def test_mostly_nan_is_refused(head, tmp_path, capsys):
    data, affine, _ = head
    holey = data.astype(np.float32)
    holey[:70] = np.nan
    path = save(tmp_path / "mostly.nii.gz", holey, affine)
    with pytest.raises(InvalidInputError, match=r"mostly.nii.gz: \d+ of \d+ voxels \(55%\) are "
                                                "NaN or infinite: more than half"):
        inference.strip(path, tmp_path / "out", fake_model(1.0), progress=False)
    assert main(["predict", str(path), "-o", str(tmp_path / "cli"), "-q"]) == 1
    assert "more than half" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists() or list((tmp_path / "cli").iterdir()) == []


# --------------------------------------------------------------------------- 3. formats
def write_minc2(path, data, affine):
    """A MINC2 file (HDF5) of a RAS-ordered volume with a diagonal affine, written with h5py."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        image = f.create_group("minc-2.0/image/0")
        # MINC stores the slowest axis first: (z, y, x).
        var = image.create_dataset("image", data=np.ascontiguousarray(data.T.astype(np.int16)))
        var.attrs["dimorder"] = np.bytes_(b"zspace,yspace,xspace")  # fixed-length, as MINC
        var.attrs["valid_range"] = np.array([-32768.0, 32767.0])
        image.create_dataset("image-min", data=-32768.0)
        image.create_dataset("image-max", data=32767.0)
        for axis, name in enumerate(("xspace", "yspace", "zspace")):
            dim = f.create_dataset(f"minc-2.0/dimensions/{name}", data=0)
            dim.attrs["step"] = float(affine[axis, axis])
            dim.attrs["start"] = float(affine[axis, 3])
            dim.attrs["direction_cosines"] = np.eye(3)[axis]
    return path


@needs_default
@pytest.mark.parametrize("name", ["T1.mgz", "T1.mgh", "T1.hdr", "T1.img", "T1.mnc"])
def test_other_formats_round_trip_in_their_own_format(head, reference, tmp_path, name):
    data, affine, _ = head
    src = tmp_path / "in" / name
    src.parent.mkdir()
    if name.endswith(".mnc"):
        write_minc2(src, data, affine)
    elif name.startswith("T1.mg"):
        nib.save(nib.MGHImage(data, affine), src)
    else:
        nib.save(nib.Spm2AnalyzeImage(data, affine), src)
    img = nib.load(src)
    [res] = inference.strip(src, tmp_path / "out", progress=False)
    ext = ".nii.gz" if name.endswith(".mnc") else name[2:]
    assert res["brainmask"].endswith(f"T1_brainmask{ext}") and res["brain"].endswith(
        f"T1_brain{ext}")
    assert (res["format_note"] is not None) == name.endswith(".mnc")
    # MINC holds scaled values: its brain goes out as float32 (the same numbers here).
    brain_dtype = np.float32 if name.endswith(".mnc") else np.int16
    for key, dtype in (("brainmask", np.uint8), ("brain", brain_dtype)):
        out = nib.load(res[key])
        assert type(out) is (nib.Nifti1Image if name.endswith(".mnc") else type(img))
        assert out.shape == img.shape
        np.testing.assert_allclose(out.affine, img.affine, atol=1e-4)
        assert out.get_data_dtype().newbyteorder("=") == dtype
    # The same mask as from the NIfTI file, in world space.
    mask = np.asarray(nib.as_closest_canonical(nib.load(res["brainmask"])).dataobj) > 0
    np.testing.assert_array_equal(mask, reference)
    brain = np.asarray(nib.as_closest_canonical(nib.load(res["brain"])).dataobj)
    np.testing.assert_array_equal(brain, np.where(reference, data, 0))
    if name.endswith((".hdr", ".img")):  # the pair is one scan, listed once from a folder
        assert inference._expand([src.parent]) == [src.with_suffix(".hdr")]


def test_minc_outputs_are_announced_as_nifti(head, tmp_path, capsys):
    data, affine, _ = head
    src = write_minc2(tmp_path / "T1.mnc", data, affine)
    code = main(["predict", str(src), "-o", str(tmp_path / "out"), "-q", "--no-volume-check"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(tmp_path / "out" / "T1_brainmask.nii.gz"))
    assert "Minc2Image cannot be written by nibabel: outputs are NIfTI" in line


def test_scan_name_strips_every_image_ending():
    for name in ("T1.nii.gz", "T1.nii", "T1.mgz", "T1.mgh", "T1.hdr", "T1.img", "T1.mnc"):
        assert inference.scan_name(f"/data/{name}") == "T1"
    assert inference.scan_name("sub-01.T1w.nii.gz") == "sub-01.T1w"


# --------------------------------------------------------------------------- 4. tiny volumes
@pytest.mark.parametrize(("shape", "zooms"), [((4, 5, 7), (1.0, 1.0, 1.0)),
                                              ((128, 128, 8), (2.0, 2.0, 2.0)),
                                              ((10, 12, 12), (20.0, 20.0, 20.0))])
def test_a_volume_too_small_for_a_head_is_one_line(tmp_path, capsys, monkeypatch, shape,
                                                    zooms):
    monkeypatch.setattr(inference, "load_model", lambda name: fake_model(1.0))
    rng = np.random.default_rng(0)
    path = save(tmp_path / "tiny.nii.gz", rng.normal(100, 10, shape),
                np.diag([*zooms, 1.0]))
    out = tmp_path / "out"
    assert main(["predict", str(path), "-o", str(out), "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skullstrip predict: error: ")
    assert f"{path}: cannot be a head: its field of view is" in lines[0]
    assert "smaller than any head" in lines[0]
    assert not out.exists() or list(out.iterdir()) == []
    with pytest.raises(InvalidInputError, match="tiny.nii.gz: cannot be a head"):
        inference.strip(path, out, fake_model(1.0), progress=False)
