"""The input pipeline: TFRecord round trip, augmentation, tf.data datasets."""

from __future__ import annotations

import inspect

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from skullstrip_lib import data
from skullstrip_lib.data import AugmentConfig, augment, load_split, make_dataset
from skullstrip_lib.errors import InvalidArgumentError, InvalidInputError, SkullstripError

SHAPE = (32, 40, 48)
OFF = AugmentConfig.none()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Six small synthetic subjects preprocessed onto a 32x40x48 grid, plus a failed row."""
    from skullstrip_lib.datasets import index_dataset
    from skullstrip_lib.preprocess import PreprocessConfig
    from skullstrip_lib.synth import write_nfbs_dataset
    from skullstrip_lib.workflow import run_preprocessing

    root = tmp_path_factory.mktemp("data_nfbs")
    write_nfbs_dataset(root, 6, seed=0, progress=False, shape=(64, 64, 48),
                       voxel_size=(4.0, 4.0, 4.0))
    report = run_preprocessing(index_dataset(root / "NFBS_Dataset"), root / "prep",
                               PreprocessConfig(shape=SHAPE, spacing=5.0, n4="none"),
                               progress=False)
    assert set(report["status"]) == {"done"}
    failed = pd.DataFrame([{"subject": "ZZfailed", "status": "failed", "error": "boom",
                            "split": "train"}])
    table = pd.concat([report, failed], ignore_index=True)
    csv = root / "prep" / "with_failure.csv"
    table.to_csv(csv, index=False)
    return csv, report


@pytest.fixture(scope="module")
def records(prepared, tmp_path_factory):
    csv, _ = prepared
    out = tmp_path_factory.mktemp("tfrecords")
    data.write_tfrecords(csv, out, progress=False)
    return out


# --------------------------------------------------------------------------- TFRecords
def test_round_trip_matches_nifti(prepared, records):
    _, report = prepared
    manifest = data.read_manifest(records)
    assert manifest["shape"] == list(SHAPE)
    assert manifest["skipped_failed"] == ["ZZfailed"]
    assert manifest["source"].endswith("with_failure.csv")
    expected = report.groupby("split")["subject"].apply(sorted).to_dict()
    total = 0
    for split in data.SPLITS:
        subjects = expected.get(split, [])
        assert manifest["counts"][split] == len(subjects)
        assert manifest["subjects"][split] == subjects
        rows = report.set_index("subject")
        volumes = list(load_split(records, split).as_numpy_iterator())
        assert len(volumes) == len(subjects)
        for subject, (image, mask) in zip(subjects, volumes, strict=True):
            assert image.shape == (*SHAPE, 1) and mask.shape == (*SHAPE, 1)
            assert image.dtype == np.float32 and mask.dtype == np.float32
            ref_img = np.asarray(nib.load(rows.loc[subject, "t1w"]).dataobj, dtype=np.float32)
            ref_mask = np.asarray(nib.load(rows.loc[subject, "brainmask"]).dataobj)
            np.testing.assert_array_equal(image[..., 0], ref_img)
            np.testing.assert_array_equal(mask[..., 0], ref_mask.astype(np.float32))
        total += len(subjects)
    assert total == len(report)
    assert load_split(records, "train").element_spec[0].shape == (*SHAPE, 1)  # static shape


def test_overwrite_refused_then_allowed(prepared, tmp_path):
    csv, report = prepared
    paths = data.write_tfrecords(report, tmp_path, progress=False)  # a DataFrame works too
    assert set(paths) == {"train", "val", "test", "manifest"}
    before = paths["train"].stat().st_mtime_ns
    with pytest.raises(SkullstripError, match="already exists"):
        data.write_tfrecords(csv, tmp_path, progress=False)
    assert paths["train"].stat().st_mtime_ns == before
    data.write_tfrecords(csv, tmp_path, overwrite=True, progress=False)
    assert data.read_manifest(tmp_path)["skipped_failed"] == ["ZZfailed"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_tables_leave_nothing(prepared, tmp_path):
    _, report = prepared
    broken = report.copy()
    broken.loc[0, "brainmask"] = str(tmp_path / "missing.nii.gz")
    with pytest.raises(SkullstripError, match="missing.nii.gz: no such file"):
        data.write_tfrecords(broken, tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").iterdir())  # temporary files removed
    with pytest.raises(InvalidInputError, match="missing column"):
        data.write_tfrecords(report.drop(columns="split"), tmp_path / "out2", progress=False)
    with pytest.raises(InvalidInputError, match="unknown split"):
        data.write_tfrecords(report.assign(split="holdout"), tmp_path / "out3", progress=False)


# --------------------------------------------------------------------------- augmentation
def _ellipsoid(shape=SHAPE, centre=(14, 22, 22), radii=(9, 11, 13)):
    grid = np.indices(shape, dtype=np.float32)
    r = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, radii, strict=True))
    return (r <= 1).astype(np.float32)


def _seed(i):
    return tf.constant([i, 17], tf.int64)


def test_flip_moves_marker_left_to_right():
    image, mask = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.uint8)
    image[2:4, 10, 20] = 5.0
    mask[2:4, 10, 20] = 1
    config = AugmentConfig(**{**OFF.to_dict(), "flip_lr": 1.0})
    out_img, out_mask = (t.numpy() for t in augment(image, mask, _seed(0), config))
    x = SHAPE[0] - 1
    assert out_img[x - 3: x - 1, 10, 20].tolist() == [5.0, 5.0]
    assert out_mask[x - 3: x - 1, 10, 20].tolist() == [1.0, 1.0]
    assert out_img.sum() == 10.0 and out_mask.sum() == 2.0
    np.testing.assert_array_equal(out_img > 0, out_mask > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotation_and_scale_keep_image_and_mask_aligned(seed):
    mask = _ellipsoid()
    image = mask * 100.0 - 5.0  # minimum -5: what the image reads outside the field of view
    config = AugmentConfig(flip_lr=0.0, rotate_deg=15.0, scale=(0.7, 0.9), gamma=(1.0, 1.0),
                           bias=0.0, noise=0.0, p_geometric=1.0)
    out_img, out_mask = (t.numpy() for t in augment(image[..., None], mask[..., None],
                                                    _seed(seed), config))
    assert out_img.shape == (*SHAPE, 1) and out_mask.shape == (*SHAPE, 1)
    out_img, out_mask = out_img[..., 0], out_mask[..., 0]
    assert set(np.unique(out_mask)) <= {0.0, 1.0}  # re-thresholded at 0.5
    assert not np.array_equal(out_mask, mask)  # something happened
    assert 0.3 < out_mask.sum() / mask.sum() < 0.9  # shrunk by 0.7-0.9 per axis
    soft = (out_img + 5.0) / 100.0
    hard = soft >= 0.5
    dice = 2 * np.sum(hard & (out_mask > 0)) / (hard.sum() + out_mask.sum())
    assert dice > 0.99
    # Away from the edge of the mask the image is exactly the mask times 100.
    assert np.mean(np.abs(soft - out_mask) < 0.01) > 0.9
    # Scaled down by at least 0.7: the corners sample outside the field of view.
    assert out_img[0, 0, 0] == pytest.approx(-5.0) and out_mask[0, 0, 0] == 0.0


def test_identity_config_returns_input():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(*SHAPE, 1)).astype(np.float32)
    mask = (_ellipsoid()[..., None]).astype(np.uint8)
    assert not OFF.enabled and AugmentConfig().enabled
    out_img, out_mask = augment(image, mask, _seed(3), OFF)
    assert out_mask.dtype == tf.float32
    np.testing.assert_array_equal(out_img.numpy(), image)
    np.testing.assert_array_equal(out_mask.numpy(), mask.astype(np.float32))


@pytest.mark.parametrize("change", [{"gamma": (0.5, 0.5)}, {"bias": 0.3}, {"noise": 0.1}])
def test_intensity_ops_change_image_not_mask(change):
    mask = _ellipsoid()
    rng = np.random.default_rng(1)
    image = (mask * 2.0 + 0.1 * rng.normal(size=SHAPE)).astype(np.float32)
    config = AugmentConfig(**{**OFF.to_dict(), **change})
    out_img, out_mask = (t.numpy() for t in augment(image, mask, _seed(4), config))
    np.testing.assert_array_equal(out_mask, mask)
    assert np.abs(out_img - image).mean() > 0.01
    if "noise" not in change:  # gamma and bias keep the minimum (the background level)
        assert out_img.min() == pytest.approx(image.min(), abs=1e-5)
        # and keep the order of intensities (gamma) or change them smoothly (bias)
        assert np.corrcoef(out_img.ravel(), image.ravel())[0, 1] > 0.95


def test_augment_is_a_function_of_the_seed():
    mask = _ellipsoid()
    image = mask * 3.0
    a = augment(image, mask, _seed(5), AugmentConfig(p_geometric=1.0))
    b = augment(image, mask, _seed(5), AugmentConfig(p_geometric=1.0))
    c = augment(image, mask, _seed(6), AugmentConfig(p_geometric=1.0))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


def test_config_validation():
    with pytest.raises(InvalidArgumentError, match=r"^flip_lr must be a number in \[0, 1\], "
                                                   "got 1.5$"):
        AugmentConfig(flip_lr=1.5)
    with pytest.raises(InvalidArgumentError, match="^rotate_deg must be a number >= 0, got nan$"):
        AugmentConfig(rotate_deg=float("nan"))  # once let through: nan < 0 is False
    with pytest.raises(InvalidArgumentError, match=r"^scale must be a range 0 < low <= high, "
                                                   r"got \(1.1, 0.9\)$"):
        AugmentConfig(scale=(1.1, 0.9))


def test_make_dataset_checks_its_arguments_first(tmp_path):
    with pytest.raises(InvalidArgumentError, match="^batch_size must be an integer >= 1, got 0$"):
        make_dataset(tmp_path, "train", batch_size=0)
    with pytest.raises(InvalidArgumentError, match="^split must be one of 'train', 'val' or "
                                                   "'test', got 'holdout'$"):
        make_dataset(tmp_path, "holdout", batch_size=1)


# --------------------------------------------------------------------------- datasets
def _batches(ds, n):
    return [(i.numpy(), m.numpy()) for i, m in ds.take(n)]


def test_make_dataset_is_deterministic(records):
    def build(seed):
        return make_dataset(records, "train", batch_size=2, augment_config=AugmentConfig(),
                            seed=seed, repeat=True)

    first, again, other = _batches(build(3), 4), _batches(build(3), 4), _batches(build(4), 4)
    for (i1, m1), (i2, m2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(m1, m2)
    assert any(not np.array_equal(i1, i2) for (i1, _), (i2, _) in zip(first, other,
                                                                          strict=True))


def test_make_dataset_new_augmentation_each_epoch(records):
    ds = make_dataset(records, "train", batch_size=1, shuffle=False,
                      augment_config=AugmentConfig(), seed=0)
    epoch1, epoch2 = _batches(ds, 2), _batches(ds, 2)
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])


def test_make_dataset_batch_shapes(records):
    n_train = data.read_manifest(records)["counts"]["train"]
    train = make_dataset(records, "train", batch_size=2, augment_config=AugmentConfig())
    shapes = [tuple(i.shape) for i, _ in train]
    assert shapes == [(2, *SHAPE, 1)] * (n_train // 2)  # the remainder is dropped
    assert train.element_spec[0].shape == (2, *SHAPE, 1)
    val = make_dataset(records, "val", batch_size=4, shuffle=False, cache=False)
    n_val = data.read_manifest(records)["counts"]["val"]
    (image, mask), = list(val)  # one smaller batch: nothing dropped for evaluation
    assert image.shape == (n_val, *SHAPE, 1) and mask.dtype == tf.float32
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}


_PY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def test_no_python_functions_in_the_pipeline(records):
    source = inspect.getsource(data)
    assert "numpy_function(" not in source and "py_function(" not in source
    ds = make_dataset(records, "train", batch_size=2, augment_config=AugmentConfig(),
                      repeat=True)
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node}
    ops |= {node.op for fn in graph.library.function for node in fn.node_def}
    assert "ParseExampleV2" in ops or "ParseExample" in ops or "ParseSingleExample" in ops
    assert "StatelessRandomUniformV2" in ops or any("Stateless" in op for op in ops)
    assert not ops & _PY_OPS
