"""Loading with validation, RAS reorientation, and writing back on the original grid."""

import gzip
import os
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


# ---------------------------------------- hostile headers: refused before any voxel is read
def gzip_bomb(path, shape, dtype=np.uint8, *, data_bytes=None, vox_offset=None):
    """A .nii.gz whose header declares ``shape`` of ``dtype`` followed by zeros, written in
    1 MiB pieces so that the test itself never holds them (``data_bytes`` of them: by
    default what the header declares)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352 if vox_offset is None else vox_offset
    block = header.binaryblock + b"\0" * 4  # the 4 extension bytes, no extension
    if data_bytes is None:
        data_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    # gzip members concatenated decompress to the concatenation (RFC 1952): one member of
    # 1 MiB of zeros (1 kB compressed), repeated, is a bomb written in milliseconds.
    mib = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    whole, rest = divmod(data_bytes, 1 << 20)
    with open(path, "wb") as f:
        f.write(gzip.compress(block, mtime=0))
        f.write(mib * whole)
        if rest:
            f.write(gzip.compress(bytes(rest), mtime=0))
    return path


def run_measured(code: str) -> tuple[int, str]:
    """Run ``code`` in a fresh Python; return its peak memory in MiB and its output."""
    import subprocess
    import sys

    # VmHWM: this process's own peak, which starts afresh at exec (ru_maxrss would carry
    # the parent's peak over: pytest's, with TensorFlow loaded by other tests).
    probe = (f"{code}\nimport re, sys\n"
             "text = open('/proc/self/status').read()\n"
             "print(int(re.search(r'VmHWM:\\s*(\\d+) kB', text)[1]) // 1024, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=False)
    *lines, peak = done.stderr.strip().splitlines()
    return int(peak), done.stdout + "\n".join(lines)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures with Linux's /proc")
def test_declared_size_beyond_the_limit_is_refused_before_reading(tmp_path):
    from skullstrip_lib.io import MAX_VOXELS, voxel_limit

    # 1 MiB of gzip that would expand to 1 GiB (1024^3 uint8): refused on its header.
    bomb = gzip_bomb(tmp_path / "bomb.nii.gz", (1024, 1024, 1024))
    assert bomb.stat().st_size < 1.1 * 2**20
    with pytest.raises(InvalidInputError, match=r"bomb.nii.gz: its header declares "
                       r"1024x1024x1024 = 1,073,741,824 voxels, more than the 134,217,728"):
        load_scan(bomb)
    assert MAX_VOXELS == 512**3
    # The same refusal costs no memory: measured in a fresh process (a Python with numpy
    # and nibabel is about 100 MiB; reading the bomb would be 1 GiB, then 4 GiB as float32).
    peak, said = run_measured(
        "from skullstrip_lib.io import load_scan\n"
        f"try:\n    load_scan({str(bomb)!r})\nexcept ValueError as e:\n    print(e)")
    assert "more than the 134,217,728 accepted" in said
    assert peak < 400, f"{peak} MiB"
    # The limit is a setting: raised, the header passes and the data are read (a small one).
    small = gzip_bomb(tmp_path / "small.nii.gz", (8, 8, 8))
    with voxel_limit(100), pytest.raises(InvalidInputError, match="512 voxels, more than the 100"):
        load_scan(small)
    with pytest.raises(InvalidInputError, match="512 voxels, more than the 100"):
        load_scan(small, max_voxels=100)
    with pytest.raises(InvalidInputError, match="image is empty"):  # read: all zeros
        load_scan(small)


@pytest.mark.parametrize("fmt", ["mgz", "hdr"])
def test_declared_size_limit_holds_for_other_formats(tmp_path, fmt):
    img = nib.Nifti1Image(blob((20, 24, 16)), np.eye(4))
    path = tmp_path / f"scan.{fmt}"
    if fmt == "mgz":
        nib.save(nib.MGHImage(img.get_fdata(dtype=np.float32), img.affine), path)
    else:
        nib.save(nib.AnalyzeImage(img.get_fdata(dtype=np.float32), img.affine), path)
    assert load_scan(path).data.shape == (20, 24, 16)
    with pytest.raises(InvalidInputError, match=r"20x24x16 = 7,680 voxels, more than the 1,000"):
        load_scan(path, max_voxels=1000)


def test_data_offset_beyond_any_header_is_refused(tmp_path):
    # A 2 GiB offset would make nibabel decompress 2 GiB of zeros to find the data.
    bomb = gzip_bomb(tmp_path / "far.nii.gz", (8, 8, 8), vox_offset=2**31, data_bytes=2**20)
    with pytest.raises(InvalidInputError, match=r"far.nii.gz: its header puts the voxel data at "
                                                r"byte 2,147,483,648, beyond any real header"):
        load_scan(bomb)


def test_header_declaring_more_than_gzip_can_hold_is_truncated(tmp_path):
    # An 80-byte gzip of a header that declares 400^3 float32 (256 MB): within the limit,
    # but 80 compressed bytes expand to 82 kB at most; refused without allocating.
    bomb = gzip_bomb(tmp_path / "short.nii.gz", (400, 400, 400), np.float32, data_bytes=0)
    assert bomb.stat().st_size < 200
    with pytest.raises(InvalidInputError, match=r"short.nii.gz: truncated: its header declares "
                                                 r"256,000,352 bytes"):
        load_scan(bomb)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures with Linux's /proc")
def test_data_beyond_the_declared_size_is_not_read(tmp_path):
    # A small image followed by 512 MiB of zeros in the same gzip stream: only the declared
    # 8x8x8 bytes are decompressed (the rest would take seconds and, read, 512 MiB).
    bomb = gzip_bomb(tmp_path / "tail.nii.gz", (8, 8, 8), data_bytes=512 * 2**20)
    peak, err = run_measured(
        "from skullstrip_lib.io import load_scan\n"
        f"try:\n    load_scan({str(bomb)!r})\nexcept ValueError as e:\n    print(e)")
    assert "image is empty" in err
    assert peak < 400, f"{peak} MiB"


@pytest.mark.parametrize("version", [1, 2])
def test_zero_voxel_size_without_qform_or_sform_is_an_error(tmp_path, version):
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(blob(), None)
    img.header["pixdim"][1:4] = (1.0, 0.0, 1.0)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    path = tmp_path / "flat.nii"
    img.to_filename(path)
    with pytest.raises(InvalidInputError, match=r"flat.nii: voxel size 1 x 0 x 1 mm \(pixdim\) "
                                                r"with no qform or sform"):
        load_scan(path)
    # With an sform the geometry is known: the pixdim is not used, the scan is read.
    img.header.set_sform(np.diag([1.0, 1.0, 1.0, 1.0]), code=1)
    img.to_filename(path)
    assert load_scan(path).zooms == (1.0, 1.0, 1.0)


def test_unreadable_scan_says_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path, blob())
    if os.geteuid() != 0:  # a real permission
        path.chmod(0)
    else:  # root reads everything: make the open fail as it would for another user
        import builtins

        real_open = builtins.open

        def denied(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(InvalidInputError, match=r"img.nii.gz: permission denied"):
        load_scan(path)


def test_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    import errno

    from skullstrip_lib.io import atomic_write_text

    def full(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")  # as gzip raises it: no name

    monkeypatch.setattr(nib, "save", full)
    for target in (tmp_path / "a.nii.gz", tmp_path / "pair.hdr"):
        with pytest.raises(OSError) as info:
            atomic_save(nib.Nifti1Image(blob(), np.eye(4)), target)
        assert info.value.errno == errno.ENOSPC
        assert info.value.filename == str(target)
        assert "No space left on device" in info.value.strerror
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "r.json", "{}")
    assert info.value.filename == str(tmp_path / "r.json")
    assert only_entries(tmp_path) == []
