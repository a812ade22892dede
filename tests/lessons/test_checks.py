"""Tests of skullstrip_lib.lessons.checks: the "build it yourself" exercises' checks.

Each check must pass a correct function (a reference written here as a student
would; the library's own only when not strict), fail a deliberately wrong one with a message
that names the case and says what is wrong, and report a stub as not written
yet (``strict=False``, what the book runs) or fail it (``strict=True``, what an
autograder runs).
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from skullstrip_lib import inference, metrics, preprocess
from skullstrip_lib.lessons import checks


def stub(*args, **kwargs):
    raise NotImplementedError("your code here")


def returns_none(*args, **kwargs):
    return None


# --------------------------------------------------------------------------- references
def to_ras(data, affine):
    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(data, ornt)
    return out, affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)


def to_ras_affine_unchanged(data, affine):
    return to_ras(data, affine)[0], affine


def pair_files(paths):
    found = {}
    for path in paths:
        m = re.match(r"sub-([A-Za-z0-9]+)_ses-[A-Za-z0-9]+_T1w(_brainmask|_brain)?\.nii\.gz$",
                     Path(path).name)
        if m:
            kind = {"": "t1w", "_brainmask": "brainmask", "_brain": "brain"}[m[2] or ""]
            found.setdefault(m[1], {})[kind] = path
    rows = []
    for subject in sorted(found):
        for kind in ("t1w", "brainmask", "brain"):
            if kind not in found[subject]:
                raise ValueError(f"subject {subject} has no {kind} file")
        rows.append({"subject": subject, **found[subject]})
    return pd.DataFrame(rows, columns=["subject", "t1w", "brainmask", "brain"])


def pair_by_position(paths):
    ends = {"t1w": "_T1w.nii.gz", "brainmask": "_brainmask.nii.gz", "brain": "_brain.nii.gz"}
    lists = {k: sorted(p for p in paths if p.endswith(e)) for k, e in ends.items()}
    rows = [(Path(t).parent.name, t, m, b)  # zip stops silently at the shortest list
            for t, m, b in zip(lists["t1w"], lists["brainmask"], lists["brain"], strict=False)]
    return pd.DataFrame(rows, columns=["subject", "t1w", "brainmask", "brain"])


def remove_field(image, field, mask):
    return image / (field / np.exp(np.log(field[mask]).mean()))


def pull(data, source_affine, target_affine, target_shape):
    matrix = np.linalg.inv(source_affine) @ target_affine
    ijk = np.indices(target_shape).reshape(3, -1)
    coords = matrix[:3, :3] @ ijk + matrix[:3, 3:]
    return ndimage.map_coordinates(data, coords, order=1, cval=0.0).reshape(target_shape)


def push(data, source_affine, target_affine, target_shape):
    return pull(data, target_affine, source_affine, target_shape)


def zscore(data, mask):
    lo, hi = np.percentile(data[mask], (0.5, 99.5))
    clipped = np.clip(data, lo, hi)
    return (clipped - clipped[mask].mean()) / clipped[mask].std()


def zscore_whole_volume(data, mask):
    lo, hi = np.percentile(data, (0.5, 99.5))
    clipped = np.clip(data, lo, hi)
    return (clipped - clipped.mean()) / clipped.std()


def residual_block(x, filters):
    import keras

    y = keras.layers.Conv3D(filters, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv3D(filters, 3, padding="same")(y)
    shortcut = x if x.shape[-1] == filters else keras.layers.Conv3D(filters, 1)(x)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def source_block(x, filters):  # the source article's defect: both convolutions read x
    import keras

    keras.layers.Conv3D(filters, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv3D(filters, 3, padding="same")(x)
    shortcut = x if x.shape[-1] == filters else keras.layers.Conv3D(filters, 1)(x)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def dice_loss(y_true, y_pred, smooth=1.0):
    axes = tuple(range(1, y_true.ndim))
    inter = (y_true * y_pred).sum(axis=axes)
    return 1 - (2 * inter + smooth) / (y_true.sum(axis=axes) + y_pred.sum(axis=axes) + smooth)


def dice_loss_whole_batch(y_true, y_pred, smooth=1.0):
    inter = (y_true * y_pred).sum()
    return np.full(len(y_true), 1 - (2 * inter + smooth) / (y_true.sum() + y_pred.sum() + smooth))


def dice_without_2(pred, ref):
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else (pred & ref).sum() / total


def surface(mask):
    return mask & ~ndimage.binary_erosion(mask)


def _hausdorff(pred, ref, spacing, reduce):
    # Both directed surface distances, pooled, then reduced (a student's HD95 or plain HD).
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return float("inf")
    sp, sr = surface(pred), surface(ref)
    d = np.concatenate([ndimage.distance_transform_edt(~sr, sampling=spacing)[sp],
                        ndimage.distance_transform_edt(~sp, sampling=spacing)[sr]])
    return float(reduce(d))


def hd_max(pred, ref, spacing):
    return _hausdorff(pred, ref, spacing, np.max)


def largest_26(mask):
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == sizes.argmax())


def gamma_curve(image, gamma):
    lo, hi = image.min(), image.max()
    if hi == lo:
        return image.copy()
    return lo + (hi - lo) * ((image - lo) / (hi - lo)) ** gamma


def dice_by_hand(pred, ref):
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else 2.0 * (pred & ref).sum() / total


def hd95_by_hand(pred, ref, spacing):
    return _hausdorff(pred, ref, spacing, lambda d: np.percentile(d, 95))


def largest_6(mask):
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == sizes.argmax())


def gamma_no_rescale(image, gamma):
    return np.sign(image) * np.abs(image) ** gamma


def baseline(data, zooms):  # chapter 11's solution, written with ndimage
    from skullstrip_lib.lessons.baseline import ball

    head = preprocess.head_mask(data, zooms)
    lo, hi = np.percentile(data[head], (2, 98))
    tissue = head & (data > lo + 0.3 * (hi - lo))
    labels, n = ndimage.label(ndimage.binary_erosion(tissue, ball(4.0, zooms)))
    if n == 0:
        return np.zeros(data.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    brain = ndimage.binary_dilation(labels == sizes.argmax(), ball(4.0, zooms)) & tissue
    return ndimage.binary_fill_holes(brain)


def _classical_4mm(data, zooms):
    from skullstrip_lib.lessons.baseline import classical_brain_mask

    return classical_brain_mask(data, zooms, erode_mm=4.0)


def threshold_only(data, zooms):  # no erosion: a bridge to the scalp keeps it attached
    from skullstrip_lib.lessons.baseline import largest_component

    head = data > 0
    lo, hi = np.percentile(data[head], (2, 98))
    return ndimage.binary_fill_holes(largest_component(head & (data > lo + 0.3 * (hi - lo))))


def baseline_absolute(data, zooms):  # a threshold in the phantom's own units
    from skullstrip_lib.lessons.baseline import ball, largest_component

    tissue = data > 800.0
    core = largest_component(ndimage.binary_erosion(tissue, ball(4.0, zooms)))
    return ndimage.binary_fill_holes(ndimage.binary_dilation(core, ball(4.0, zooms)) & tissue)


def baseline_no_fill(data, zooms):
    from skullstrip_lib.lessons.baseline import ball, largest_component

    lo, hi = np.percentile(data[data > 0], (2, 98))
    tissue = data > lo + 0.3 * (hi - lo)
    core = largest_component(ndimage.binary_erosion(tissue, ball(4.0, zooms)))
    return ndimage.binary_dilation(core, ball(4.0, zooms)) & tissue


# --------------------------------------------------------------------------- the table
GOOD = {  # written as a student would: no call of the library's implementation
    "reorient": (checks.check_reorient, to_ras),
    "pairing": (checks.check_pairing, pair_files),
    "bias": (checks.check_bias_removal, remove_field),
    "resample": (checks.check_resample, pull),
    "zscore": (checks.check_zscore, zscore),
    "residual-block": (checks.check_residual_block, residual_block),
    "dice-loss": (checks.check_dice_loss, dice_loss),
    "dice": (checks.check_dice, dice_by_hand),
    "hd95": (checks.check_hausdorff95, hd95_by_hand),
    "postprocess": (checks.check_postprocess, largest_6),
    "gamma": (checks.check_gamma, gamma_curve),
    "baseline": (checks.check_baseline, baseline),
}


def _canonical(data, affine):
    img = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.asanyarray(img.dataobj), img.affine


def _soft_dice_loss(y_true, y_pred, smooth=1.0):
    import keras

    from skullstrip_lib import losses

    return keras.ops.convert_to_numpy(losses.soft_dice_loss(y_true, y_pred, smooth))


def _residual_block(x, filters):
    from skullstrip_lib import model

    return model.residual_block(x, filters, None, "block")


def _pull_with_library(data, source_affine, target_affine, target_shape):
    grid = preprocess.ModelGrid(tuple(target_shape), target_affine, data.shape, source_affine)
    return preprocess.to_model_grid(data, grid, order=1, antialias=False)


# The library's own implementation of each piece: right answers, refused when strict.
LIBRARY = {
    "reorient": (checks.check_reorient, _canonical, "nibabel.as_closest_canonical"),
    "resample": (checks.check_resample, _pull_with_library, "preprocess.to_model_grid"),
    "zscore": (checks.check_zscore, preprocess.normalize_intensity,
               "preprocess.normalize_intensity"),
    "residual-block": (checks.check_residual_block, _residual_block, "model.residual_block"),
    "dice-loss": (checks.check_dice_loss, _soft_dice_loss, "losses.soft_dice_loss"),
    "dice": (checks.check_dice, metrics.dice, "metrics.dice"),
    "hd95": (checks.check_hausdorff95, metrics.hausdorff95, "metrics.hausdorff95"),
    "postprocess": (checks.check_postprocess, inference.postprocess_mask,
                    "inference.postprocess_mask"),
    "baseline": (checks.check_baseline, _classical_4mm, "lessons.baseline.classical_brain_mask"),
}

WRONG = {
    "reorient": (checks.check_reorient, to_ras_affine_unchanged,
                 "an LPS grid.*affine's axes run towards .*L.*P"),
    "pairing": (checks.check_pairing, pair_by_position,
                "a subject without a brain mask.*A00028352 has no brain mask.*zipping"),
    "bias": (checks.check_bias_removal, lambda image, field, mask: image / field,
             "known smooth field.*geometric mean of 1"),
    "resample": (checks.check_resample, push,
                 "shifted by one voxel.*matrix is inverted.*inv\\(source_affine\\) @ "
                 "target_affine"),
    "zscore": (checks.check_zscore, zscore_whole_volume,
               "mean 0 and standard deviation 1.*z-score of the whole volume.*data\\[mask\\]"),
    "residual-block": (checks.check_residual_block, source_block,
                       "impulse.*spread over 3.*source article's defect"),
    "dice-loss": (checks.check_dice_loss, dice_loss_whole_batch,
                  "batch of two.*one loss per volume"),
    "dice": (checks.check_dice, dice_without_2,
             "identical cubes.*expected 1, got 0.5.*factor 2 is missing"),
    "hd95": (checks.check_hausdorff95, hd_max,
             "stray voxel.*expected 0, got 1[0-9.]+.*largest distance.*95th percentile"),
    "postprocess": (checks.check_postprocess, largest_26,
                    "touching only along an edge.*faces only"),
    "gamma": (checks.check_gamma, gamma_no_rescale,
              "brightest voxels stay.*minimum must stay.*map to \\[0, 1\\]"),
    "baseline": (checks.check_baseline, threshold_only,
                 "phantom head is found.*scalp voxels are in the mask.*erode by a ball"),
}


@pytest.mark.parametrize("name", GOOD)
def test_a_correct_function_passes_every_case(name, capsys):
    check, func = GOOD[name]
    assert check(func) is True
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok: ") and out[-1].startswith("all ")
    assert all(line.startswith("ok: ") for line in out[:-1])
    assert check(func, strict=True) is True
    # The cases nbgrader's hidden tests run, made from seeds the student never saw.
    for seed in (0, 1, 2):
        assert check(func, strict=True, unseen=seed) is True
    out = capsys.readouterr().out
    assert out.count("ok: unseen") >= 6


@pytest.mark.parametrize("name", LIBRARY)
def test_strict_refuses_the_library_itself_an_alias_or_a_wrapper(name, capsys):
    # The library's own function gives right answers: fine in the book (strict=False),
    # refused when graded, whether it is passed as it is (an alias: by identity) or
    # called from the student's function, however deep (by watching the calls).
    check, func, shown = LIBRARY[name]
    assert check(func) is True
    if not isinstance(func, type(stub)) or func.__module__ != __name__:  # the function itself
        with pytest.raises(AssertionError, match=rf"is {re.escape(shown)} itself, the "
                                                 "library's own implementation"):
            check(func, strict=True)

    def wrapper(*args, **kwargs):
        def helper():
            return func(*args, **kwargs)
        return helper()

    with pytest.raises(AssertionError, match=rf"wrapper fails the case .*: it calls "
                                             rf"{re.escape(shown)}, the library's own"):
        check(wrapper, strict=True)
    with pytest.raises(AssertionError, match=rf"it calls {re.escape(shown)}"):
        check(wrapper, strict=True, unseen=3)


def test_strict_sees_aliases_partials_imported_names_and_threads():
    import functools
    import threading

    from skullstrip_lib.metrics import dice as imported_under_another_name

    my_dice = metrics.dice
    with pytest.raises(AssertionError,
                       match=r"the function checked \(dice\) is metrics.dice itself"):
        checks.check_dice(my_dice, strict=True)
    with pytest.raises(AssertionError, match="is metrics.dice itself"):
        checks.check_dice(functools.partial(metrics.dice), strict=True)

    def renamed(a, b):
        return imported_under_another_name(a, b)

    def in_a_thread(a, b):
        out = []
        worker = threading.Thread(target=lambda: out.append(metrics.dice(a, b)))
        worker.start()
        worker.join()
        return out[0]

    def evaluate(a, b):  # a library function that computes the Dice among others
        return metrics.evaluate_masks(a, b)["dice"]

    def profiler_off(a, b):
        import sys

        sys.setprofile(None)
        return dice_by_hand(a, b)

    for func, called in [(renamed, "metrics.dice"), (in_a_thread, "metrics.dice"),
                         (evaluate, "metrics.evaluate_masks")]:
        with pytest.raises(AssertionError, match=f"it calls {called}"):
            checks.check_dice(func, strict=True)
    with pytest.raises(AssertionError, match="switched off the profiler"):
        checks.check_dice(profiler_off, strict=True)
    # Calls of the library outside the student's function (the check's own answers) do
    # not count, and the profiler in place before the check is put back.
    import sys

    assert checks.check_dice(dice_by_hand, strict=True) is True
    assert sys.getprofile() is None


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_function_fails_the_unseen_cases_too(name):
    check, func, _ = WRONG[name]
    failed = 0
    for seed in range(4):
        try:
            check(func, unseen=seed)
        except AssertionError as exc:
            assert "unseen" in str(exc)
            failed += 1
    # Random masks may miss the one configuration a wrong clean-up gets wrong (two cubes
    # touching by an edge): the chapter's cases, run by the same graded cell, catch it.
    assert failed >= (2 if name == "postprocess" else 4)


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_function_fails_with_what_is_wrong(name):
    check, func, message = WRONG[name]
    with pytest.raises(AssertionError, match=re.compile(message, re.DOTALL)):
        check(func)


@pytest.mark.parametrize("name", WRONG)
def test_a_stub_is_not_written_yet_unless_strict(name, capsys):
    check = WRONG[name][0]
    assert check(stub) is False
    out = capsys.readouterr().out
    assert out.startswith("not written yet: stub raises NotImplementedError (your code here)")
    assert "ok:" not in out
    with pytest.raises(AssertionError, match="not written yet: stub raises NotImplementedError"):
        check(stub, strict=True)
    with pytest.raises(AssertionError, match="returned None: did you forget the `return`"):
        check(returns_none)


def test_every_check_is_tested():
    assert sorted({c.__name__ for c, _ in GOOD.values()} | {"check_number"}) == sorted(
        checks.__all__)


def test_check_number():
    assert checks.check_number("x", np.float32(0.5)) is True
    assert checks.check_number("x", 0.949, 0.947, tolerance=0.002) is True
    for value, message in [("0.9", "x should be one number, got '0.9'"),
                           (True, "x should be one number, got True"),
                           ([0.1, 0.2], "x should be one number"),
                           (float("nan"), "x should be a finite number, got nan")]:
        with pytest.raises(AssertionError, match=re.escape(message)):
            checks.check_number("x", value)
    with pytest.raises(AssertionError, match=re.escape("x is 0.9; the chapter's data give "
                                                       "0.947368 (accepted within ± 0.002)")):
        checks.check_number("x", 0.9, 18 / 19, tolerance=0.002)


def test_other_errors_name_the_case():
    with pytest.raises(AssertionError, match="fails the case 'two identical cubes give Dice "
                                             "1': it raised ZeroDivisionError"):
        checks.check_dice(lambda pred, ref: int(pred.sum()) // 0)
    with pytest.raises(TypeError, match="pass the function itself"):
        checks.check_dice(metrics.dice(np.ones(3, bool), np.ones(3, bool)))


def dice_loss_without_2(y_true, y_pred, smooth=1.0):
    axes = (1, 2, 3, 4)
    return 1 - ((y_true * y_pred).sum(axis=axes) + smooth) / (
        y_true.sum(axis=axes) + y_pred.sum(axis=axes) + smooth)


def block_without_shortcut(x, filters):
    import keras

    y = keras.layers.Conv3D(filters, 3, padding="same", activation="relu")(x)
    return keras.layers.ReLU()(keras.layers.Conv3D(filters, 3, padding="same")(y))


def block_without_projection(x, filters):
    import keras

    y = keras.layers.Conv3D(filters, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv3D(filters, 3, padding="same")(y)
    return keras.layers.ReLU()(keras.layers.Add()([y, x]))


def divide_in_place(image, field, mask):
    image /= field / np.exp(np.log(field[mask]).mean())
    return image


@pytest.mark.parametrize(("check", "func", "message"), [
    (checks.check_dice, metrics.iou, "the IoU"),
    (checks.check_hausdorff95, lambda p, r, spacing: metrics.hausdorff95(p, r), "in voxels"),
    (checks.check_dice_loss, dice_loss_without_2, "lacks the factor 2"),
    (checks.check_zscore, lambda d, m: (d - d[m].mean()) / d[m].std(), "nothing was clipped"),
    (checks.check_residual_block, block_without_shortcut, "returns ReLU\\(x\\).*add x"),
    (checks.check_residual_block, block_without_projection, "1 -> 8 channels.*1x1x1 Conv3D"),
    (checks.check_bias_removal, divide_in_place, "changed its input"),
    (checks.check_postprocess, lambda m: ndimage.binary_fill_holes(m), "blob away.*largest"),
    (checks.check_baseline, baseline_absolute, "other intensity units.*relative to the head"),
    (checks.check_baseline, baseline_no_fill, "ventricle.*fill the holes"),
    (checks.check_resample, lambda d, s, t, shape: ndimage.map_coordinates(
        d, (np.linalg.inv(s) @ t)[:3, :3] @ np.indices(shape).reshape(3, -1)
        + (np.linalg.inv(s) @ t)[:3, 3:], order=1, mode="nearest").reshape(shape),
     "outside the source grid.*cval=0"),
], ids=["dice-is-iou", "hd95-in-voxels", "loss-no-2", "zscore-no-clip", "block-no-shortcut",
        "block-no-projection", "bias-in-place", "postprocess-no-component",
        "baseline-absolute", "baseline-no-fill", "resample-nearest-edge"])
def test_targeted_hints(check, func, message):
    with pytest.raises(AssertionError, match=re.compile(message, re.DOTALL)):
        check(func)


def test_the_student_edition_keeps_each_stub_and_its_check(tmp_path):
    # The student edition drops the solutions (which redefine the student's function) but
    # keeps the exercise, the stub and the check, which then reports "not written yet".
    import nbformat

    from tools.bookbuild.editions import student_edition

    root = Path(__file__).resolve().parents[2] / "notebooks"
    student_edition(root, tmp_path)
    for path in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(tmp_path / path.name, as_version=4).cells
        code = [c for c in cells if c.cell_type == "code"]
        stubs = [i for i, c in enumerate(code) if "exercise-stub" in c.metadata.get("tags", [])]
        assert stubs, path.name
        for i in stubs:
            assert "raise NotImplementedError" in code[i].source
            assert "checks.check_" in code[i + 1].source
        # No solution is left: nothing redefines the stub's function after the stub.
        names = re.findall(r"^def (\w+)", "".join(code[i].source for i in stubs), re.M)
        later = "".join(c.source for c in code[stubs[0] + 1:])
        assert not any(re.search(rf"^def {n}\b", later, re.M) for n in names), path.name
        text = "".join(c.source for c in cells if c.cell_type == "markdown")
        assert f"ex-{path.stem[:2]}-build-" in text and "{solution-start}" not in text
