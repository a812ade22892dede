"""The exercises whose answer is a number: what nbgrader autogrades, and how it finds the value.

Every exercise of a chapter that is not its "build it yourself" gets an answer
cell in the nbgrader assignment (:func:`tools.bookbuild.nbgrader.nbgrader_source`):
graded by hand where the answer is prose, and autograded where it is a number.
This table says which are numbers. For each it names the variable the student
sets, what it is, the tolerance, and a Python expression for the expected
value, evaluated by a hidden test *from the chapter's own data*: the test runs
the exercise's own code solution (the cells between its ``{solution-start}``
and ``{solution-end}``, if it has one) inside a function, so that its names
never overwrite the student's, and then evaluates the expression there. No
expected value is written down by hand: change the chapter, and the answer
follows it.

An exercise listed here with ``prose=True`` also asks for an explanation: it
gets a hand-graded cell as well.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NUMERIC_ANSWERS", "Answer"]


@dataclass(frozen=True)
class Answer:
    """One number a student gives, and how the grader computes the expected one.

    Attributes
    ----------
    name : str
        The variable the student sets in the answer cell.
    what : str
        What the number is, with its unit: the comment above the answer cell.
    expected : str
        A Python expression for the expected value, evaluated after the
        exercise's code solution, in the chapter's namespace.
    tolerance : float
        The largest accepted difference, in the number's unit.
    points : int
        Points of its autograded test cell.
    """

    name: str
    what: str
    expected: str
    tolerance: float
    points: int = 1


def _ras_voxel(axis: int) -> Answer:
    return Answer(f"ras_voxel_{'ijk'[axis]}", f"index {'ijk'[axis]} of that voxel in the RAS scan",
                  f"float(ijk_ras[{axis}])", 0.5)


def _grid_centre(axis: int) -> Answer:
    return Answer(f"centre_{'xyz'[axis]}_mm", f"world {'xyz'[axis]} of the model grid's centre, mm",
                  f"float(centre_mm[{axis}])", 0.05)


NUMERIC_ANSWERS: dict[str, tuple[tuple[Answer, ...], bool]] = {
    # label: (the numbers, whether a prose answer is asked for as well)
    "ex-01-flair-ti": (tuple(
        Answer(f"ti_{tissue}_{field.rstrip('T').replace('.', '')}t_ms",
               f"the inversion time that nulls {tissue.upper()} at {field}, ms",
               f"mri.null_inversion_time(mri.TISSUES[{field!r}][{tissue!r}].t1_ms, 9000.0)", 5.0)
        for tissue in ("csf", "wm") for field in ("1.5T", "3T")), True),
    "ex-01-best-tr": (tuple(
        Answer(f"best_tr_{field.rstrip('T').replace('.', '')}t_ms",
               f"the TR that maximises S(WM) - S(GM) at {field} (TE 15 ms), ms",
               f"mri.best_tr('wm', 'gm', 15.0, field={field!r})", 5.0)
        for field in ("1.5T", "3T")), True),
    "ex-01-world": (tuple(_ras_voxel(axis) for axis in range(3)), False),
    "ex-02-drop-one": ((
        Answer("subjects_changing_split", "how many of the 124 subjects change split",
               "changed", 0.0),), True),
    "ex-02-fractions": (tuple(
        Answer(f"n_{split}", f"{split} subjects of an 80/10/10 split of 125",
               "int(datasets.split_subjects(ids_125, fractions=(0.8, 0.1, 0.1), "
               f"seed=split_seed).value_counts()[{split!r}])", 0.0)
        for split in ("train", "val", "test")), False),
    "ex-04-world-centre": (tuple(_grid_centre(axis) for axis in range(3)), True),
    "ex-05-grey-levels": ((
        Answer("grey_levels_as_scanned", "distinct 8-bit grey levels in the first brain",
               "int(np.unique(np.rint(intensity.rescale_0_255(images[0]))[brains[0]]).size)",
               0.0),
        Answer("grey_levels_one_bright_voxel", "the same with the one bright voxel",
               "int(np.unique(np.rint(intensity.rescale_0_255(x_spiked))[brains[0]]).size)",
               0.0),
    ), False),
    "ex-06-block-by-hand": ((
        Answer("enc0_weights", "the weights of block enc0",
               "int(unet_anatomy.block_table(full_net).set_index('block')"
               ".loc['enc0', 'parameters'])", 0.0),), False),
    "ex-06-depth-for-the-head": ((
        Answer("smallest_depth", "the smallest depth whose receptive field covers 160 voxels",
               "depth", 0.0),), True),
    "ex-07-all-brain": (tuple(
        Answer(f"all_brain_{column}", f"the {what} of 'everything is brain'",
               "float(training_lab.compare_losses(ball, {'everything is brain': "
               f"np.ones(ball.shape)}}).loc['everything is brain', {column!r}])", tolerance)
        for column, what, tolerance in (("accuracy", "accuracy", 0.005),
                                        ("bce", "binary cross-entropy", 0.05),
                                        ("dice", "Dice", 0.005))), True),
    "ex-07-batch-for-a-t4": (tuple(
        Answer(f"largest_batch_{policy}", f"the largest batch under 16 GiB ({policy}, "
               "estimate)", f"max((b for b in range(1, 17) if unet.training_memory("
               f"nets[{policy!r}], b)['total'] < 16 * 2**30), default=0)", 0.0)
        for policy in ("float32", "mixed_float16")), True),
    "ex-09-threshold": (tuple(
        Answer(f"volume_ml_at_{str(t).replace('.', '')}", f"the brain volume at threshold {t}, mL",
               f"float(inference.postprocess_mask(native_probability >= {t}).sum() * "
               "np.prod(scan.zooms) / 1000)", 1.0)
        for t in (0.3, 0.7)), True),
    "ex-08-convert": ((
        Answer("dice_of_iou_090", "the Dice of one pair of masks whose IoU is 0.90",
               # a mask of 90 voxels inside one of 100: IoU 0.90, its Dice by the library
               "metrics.dice(np.arange(100) < 90, np.ones(100, bool))", 0.002),
    ), True),
    "ex-08-shift": ((
        Answer("shift_dice", "the Dice of the 25 mm ball shifted by 2 mm",
               "metrics.evaluate_masks(shifted, ref)['dice']", 0.005),
        Answer("shift_hd95_mm", "its HD95, in mm",
               "metrics.evaluate_masks(shifted, ref)['hd95_mm']", 0.25),
        Answer("shift_volume_diff_ml", "its volume difference, in mL",
               "metrics.evaluate_masks(shifted, ref)['volume_diff_ml']", 0.05),
    ), False),
    "ex-08-ablation-paired": ((
        Answer("defects_worse_on_every_seed",
               "how many defects did worse than the pipeline on every seed (held-out Dice)",
               "int(((paired < 0).sum() == paired.count()).sum())", 0.0),
    ), True),
}
