"""Loading with validation, RAS reorientation, and writing back on the original grid."""

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from skullstrip_lib.errors import (
    InputWarning,
    InvalidInputError,
    MissingFileError,
    SkullstripError,
)
from skullstrip_lib.io import atomic_save, background_level, load_mask, load_scan, save_like


def blob(shape=(20, 24, 16)):
    """A bright ellipsoid on a dark background, with a gradient so axes are distinguishable."""
    idx = np.indices(shape, dtype=float)
    c = [(s - 1) / 2 for s in shape]
    r = sum(((i - ci) / (s / 3)) ** 2 for i, ci, s in zip(idx, c, shape, strict=True))
    return ((r < 1) * (100 + idx[0] + 2 * idx[1] + 3 * idx[2])).astype(np.float32)


def write(tmp_path, data, affine=None, name="img.nii.gz", dtype=None):
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    path = tmp_path / name
    nib.save(img, path)
    return path


def only_entries(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


# ------------------------------------------------------------------ bad input: one clear error
def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.nii.gz: file not found"):
        load_scan(tmp_path / "nope.nii.gz")


def test_not_nifti(tmp_path):
    p = tmp_path / "notes.nii.gz"
    p.write_text("this is not an image")
    with pytest.raises(InvalidInputError, match=r"notes.nii.gz: .*(not a NIfTI|corrupt)"):
        load_scan(p)
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    with pytest.raises(InvalidInputError, match="photo.png: not a NIfTI"):
        load_scan(png)


@pytest.mark.parametrize("name", ["scan.mgz", "scan.mgh", "scan.hdr", "scan.img"])
def test_other_formats_are_read_in_ras_and_written_back(tmp_path, name):
    data = np.rint(blob()).astype(np.int16)
    aff = lps_oblique_affine(deg=0.0)  # MGH and Analyze keep an axis-aligned affine exactly
    cls = nib.MGHImage if name.startswith("scan.mg") else nib.Spm2AnalyzeImage
    nib.save(cls(data, aff), tmp_path / name)
    scan = load_scan(tmp_path / name)
    assert nib.aff2axcodes(scan.affine) == ("R", "A", "S")
    assert scan.output_suffix == name[4:] and scan.writes_own_format
    np.testing.assert_array_equal(scan.to_original(scan.data), data)
    out = save_like(scan.data > 0, scan, tmp_path / f"mask{name[4:]}", dtype=np.uint8)
    back = nib.load(out)
    assert type(back) is type(nib.load(tmp_path / name)) and back.shape == data.shape
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data > 0)
    assert back.get_data_dtype() == np.uint8
    same = nib.load(save_like(scan.data, scan, tmp_path / f"copy{name[4:]}"))
    assert same.get_data_dtype().newbyteorder("=") == np.int16
    np.testing.assert_array_equal(np.asarray(same.dataobj), data)
    # ... and as NIfTI, when asked
    as_nifti = nib.load(save_like(scan.data > 0, scan, tmp_path / "m.nii.gz", dtype=np.uint8))
    np.testing.assert_allclose(as_nifti.affine, aff, atol=1e-4)


def test_analyze_pair_is_written_whole_and_not_clobbered(tmp_path):
    data = np.rint(blob()).astype(np.int16)
    nib.save(nib.Spm2AnalyzeImage(data, lps_oblique_affine()), tmp_path / "a.img")
    scan = load_scan(tmp_path / "a.img")  # oblique: SPM's .mat carries the affine
    out_dir = tmp_path / "out"
    save_like(scan.data, scan, out_dir / "b.img")
    assert only_entries(out_dir) == ["b.hdr", "b.img", "b.mat"]
    np.testing.assert_allclose(nib.load(out_dir / "b.hdr").affine, lps_oblique_affine())
    with pytest.raises(SkullstripError, match="b.(hdr|img|mat): already exists"):
        save_like(scan.data, scan, out_dir / "b.hdr")
    save_like(scan.data, scan, out_dir / "b.img", overwrite=True)
    assert only_entries(out_dir) == ["b.hdr", "b.img", "b.mat"]  # no temporaries left


@pytest.mark.parametrize("name", ["minc1_1_scale.mnc", "minc2_1_scale.mnc"])
def test_minc_is_read_and_written_back_as_nifti(tmp_path, name):
    src = Path(nib.__file__).parent / "tests" / "data" / name
    if not src.exists():
        pytest.skip("nibabel's test data is not installed")
    if name.startswith("minc2"):
        pytest.importorskip("h5py")
    expected = nib.load(src)
    scan = load_scan(src)
    assert not scan.writes_own_format and scan.output_suffix == ".nii.gz"
    np.testing.assert_allclose(scan.to_original(scan.data),
                               np.asarray(expected.dataobj, np.float32), rtol=1e-6)
    back = nib.load(save_like(scan.data, scan, tmp_path / "out.nii.gz", dtype=np.float32))
    assert back.shape == expected.shape
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-4)
    with pytest.raises(ValueError, match="cannot write .mnc"):
        save_like(scan.data, scan, tmp_path / "out.mnc")


def test_loading_matches_nibabel_canonical(tmp_path):
    """The one-copy reader gives what nibabel's own scaling and reorientation give."""
    data = np.rint(blob() * 3).astype(np.int16)
    img = nib.Nifti1Image(data, lps_oblique_affine())
    img.header.set_slope_inter(0.5, -3.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, path)
    canonical = nib.as_closest_canonical(nib.load(path))
    scan = load_scan(path)
    np.testing.assert_allclose(scan.affine, canonical.affine)
    np.testing.assert_allclose(scan.data, np.asarray(canonical.dataobj, np.float32), rtol=1e-6)
    assert scan.data.dtype == np.float32 and scan.data.flags.c_contiguous


def test_truncated_gzip(tmp_path):
    p = write(tmp_path, blob((40, 40, 40)) + np.random.default_rng(0).random((40, 40, 40)))
    raw = p.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidInputError, match="cut.nii.gz: (truncated|unreadable)"):
        load_scan(cut)


def test_2d_and_4d(tmp_path):
    with pytest.raises(InvalidInputError, match=r"flat.nii.gz: expected a 3D volume.*2D"):
        load_scan(write(tmp_path, blob()[:, :, 0], name="flat.nii.gz"))
    with pytest.raises(InvalidInputError, match=r"slice.nii.gz: .*single slice"):
        load_scan(write(tmp_path, blob()[:, :, :1], name="slice.nii.gz"))
    four = np.stack([blob(), blob()], axis=-1)
    with pytest.raises(InvalidInputError, match=r"bold.nii.gz: .*4D with 2 volumes"):
        load_scan(write(tmp_path, four, name="bold.nii.gz"))
    # A 4D file holding one volume is a 3D volume.
    scan = load_scan(write(tmp_path, blob()[..., None], name="one.nii.gz"))
    assert scan.image.shape == blob().shape


def test_keep_dtype_holds_integers_as_they_are(tmp_path):
    data = np.rint(blob()).astype(np.int16)
    path = write(tmp_path, data, lps_oblique_affine(), dtype=np.int16)
    as_float, as_int = load_scan(path), load_scan(path, keep_dtype=True)
    assert as_float.data.dtype == np.float32 and as_int.data.dtype == np.int16
    np.testing.assert_array_equal(as_int.data, as_float.data)
    np.testing.assert_array_equal(as_int.to_original(as_int.data), data)
    img = nib.load(path)
    img.header.set_slope_inter(2.0, 1.0)  # scaled integers hold other values: float32
    nib.save(img, tmp_path / "scaled.nii.gz")
    scaled = load_scan(tmp_path / "scaled.nii.gz", keep_dtype=True)
    assert scaled.data.dtype == np.float32
    np.testing.assert_allclose(scaled.to_original(scaled.data), data * 2.0 + 1.0)


def test_all_zero(tmp_path):
    with pytest.raises(InvalidInputError, match="zeros.nii.gz: image is empty"):
        load_scan(write(tmp_path, np.zeros((8, 8, 8), np.float32), name="zeros.nii.gz"))


def test_nan_outside_the_field_of_view_is_background(tmp_path):
    data = blob() - 1000.0  # an offset background: the fill is its level, not 0
    bad = data.copy()
    bad[:5] = np.nan  # a resampled scan's missing edge
    bad[6, 6, 6] = np.inf
    n = 5 * 24 * 16 + 1
    # By default (training data) any NaN is an error ...
    with pytest.raises(InvalidInputError, match=f"nan.nii.gz: contains {n} NaN or infinite"):
        load_scan(write(tmp_path, bad, name="nan.nii.gz"))
    # ... and for scans as they arrive it is background.
    with pytest.warns(InputWarning, match=rf"nan.nii.gz: {n} NaN or infinite voxels \(25.0%\) "
                                          r"treated as background \(-1000\)"):
        scan = load_scan(write(tmp_path, bad, name="nan.nii.gz"), allow_nonfinite=True)
    assert scan.n_nonfinite == n and scan.background == -1000.0
    assert np.isfinite(scan.data).all()
    np.testing.assert_array_equal(scan.data[:5], -1000.0)
    np.testing.assert_array_equal(scan.data[6:], np.where(np.isfinite(bad[6:]), bad[6:], -1000))
    mostly = data.copy()
    mostly[:11] = np.nan
    with pytest.raises(InvalidInputError, match=r"mostly.nii.gz: 4224 of 7680 voxels \(55%\) are "
                                                "NaN or infinite: more than half"):
        load_scan(write(tmp_path, mostly, name="mostly.nii.gz"), allow_nonfinite=True)
    # A mask stays strict: one NaN voxel is an error.
    good = load_scan(write(tmp_path, data, name="good.nii.gz"))
    mask = (blob() > 0).astype(np.float32)
    mask[3, 3, 3] = np.nan
    with pytest.raises(InvalidInputError, match="m.nii.gz: contains 1 NaN or infinite"):
        load_mask(write(tmp_path, mask, name="m.nii.gz"), good)


def test_background_level_follows_offset_and_scale():
    data = blob()
    assert background_level(data) == 0.0
    assert background_level(data - 1000) == -1000.0
    assert background_level(data * 0.01 + 5) == pytest.approx(5.0)


def test_singular_affine(tmp_path):
    # nibabel refuses to write a singular affine, so break the header by hand.
    img = nib.Nifti1Image(blob(), np.eye(4))
    img.header["qform_code"] = 0
    img.header["sform_code"] = 1
    img.header["srow_z"] = [0.0, 0.0, 0.0, 0.0]
    path = tmp_path / "flatten.nii"
    path.write_bytes(img.header.binaryblock + b"\0" * 4 + blob().tobytes(order="F"))
    with pytest.raises(InvalidInputError, match="flatten.nii: affine is singular"):
        load_scan(path)


def test_mask_mismatch_and_empty(tmp_path):
    scan = load_scan(write(tmp_path, blob()))
    wrong_shape = write(tmp_path, np.ones((20, 24, 15), np.uint8), name="m1.nii.gz")
    with pytest.raises(InvalidInputError, match=r"m1.nii.gz: mask shape \(20, 24, 15\) does not"):
        load_mask(wrong_shape, scan)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    wrong_affine = write(tmp_path, (blob() > 0).astype(np.uint8), shifted, name="m2.nii.gz")
    with pytest.raises(InvalidInputError, match="m2.nii.gz: mask affine does not match"):
        load_mask(wrong_affine, scan)
    empty = write(tmp_path, np.zeros(blob().shape, np.uint8), name="m3.nii.gz")
    with pytest.raises(InvalidInputError, match="m3.nii.gz: mask is empty"):
        load_mask(empty, scan)
    labels = write(tmp_path, (blob() > 0).astype(np.uint8) * 3, name="m4.nii.gz")
    with pytest.raises(InvalidInputError, match="m4.nii.gz: mask is not binary"):
        load_mask(labels, scan)
    good = write(tmp_path, (blob() > 0).astype(np.uint8), name="m5.nii.gz")
    assert load_mask(good, scan).sum() == (blob() > 0).sum()


# ------------------------------------------------------------------ orientation and writing back
def lps_oblique_affine(zooms=(1.2, 0.9, 3.0), deg=12.0):
    t = np.deg2rad(deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    flip = np.diag([-1.0, -1.0, 1.0])  # L and P instead of R and A: an LPS voxel order
    aff = np.eye(4)
    aff[:3, :3] = rot @ flip @ np.diag(zooms)
    aff[:3, 3] = [30.0, 20.0, -10.0]
    return aff


def test_reorients_to_ras_without_changing_values(tmp_path):
    data = blob()
    aff = lps_oblique_affine()
    scan = load_scan(write(tmp_path, data, aff))
    assert nib.aff2axcodes(scan.affine) == ("R", "A", "S")
    assert nib.aff2axcodes(scan.original_affine) == ("L", "P", "S")
    # The world position of every voxel value is unchanged by reorientation.
    i, j, k = 3, 5, 7
    world = aff @ [i, j, k, 1]
    ras_idx = np.rint(np.linalg.inv(scan.affine) @ world).astype(int)[:3]
    assert scan.data[tuple(ras_idx)] == data[i, j, k]
    assert scan.zooms == pytest.approx((1.2, 0.9, 3.0))
    np.testing.assert_array_equal(scan.to_original(scan.data), data)


def test_save_like_keeps_grid_header_and_dtype(tmp_path):
    data = np.rint(blob()).astype(np.int16)
    aff = lps_oblique_affine()
    src = write(tmp_path, data, aff, dtype=np.int16)
    img = nib.load(src)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=2)
    nib.save(img, src)
    scan = load_scan(src)
    out = save_like(scan.data > 0, scan, tmp_path / "mask.nii.gz", dtype=np.uint8)
    back = nib.load(out)
    assert back.shape == data.shape
    np.testing.assert_allclose(back.affine, aff)
    assert back.get_data_dtype() == np.uint8
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 2
    np.testing.assert_array_equal(np.asarray(back.dataobj), data > 0)
    # Default dtype is the original one.
    same = nib.load(save_like(scan.data, scan, tmp_path / "copy.nii.gz"))
    assert same.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(same.dataobj), data)


def test_nothing_is_silently_overwritten(tmp_path):
    img = nib.Nifti1Image(blob(), np.eye(4))
    p = atomic_save(img, tmp_path / "a.nii.gz")
    with gzip.open(p) as f:
        assert f.read(4)  # really gzip-compressed
    with pytest.raises(SkullstripError, match="a.nii.gz: already exists"):
        atomic_save(img, p)
    atomic_save(img, p, overwrite=True)
    assert only_entries(tmp_path) == ["a.nii.gz"]  # no temporary left behind


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_save(nib.Nifti1Image(blob(), np.eye(4)), tmp_path / "b.nii.gz")
    assert only_entries(tmp_path) == []


def test_atomic_write_text_replaces_and_leaves_no_temporary(tmp_path):
    from skullstrip_lib.io import atomic_write_text

    p = atomic_write_text(tmp_path / "sub" / "r.json", '{"a": 1}')
    assert p.read_text() == '{"a": 1}'
    atomic_write_text(p, '{"a": 2}')
    assert p.read_text() == '{"a": 2}'
    assert sorted(x.name for x in p.parent.iterdir()) == ["r.json"]
    assert p.stat().st_mode & 0o044  # readable by others, like any file (not mkstemp's 0600)
