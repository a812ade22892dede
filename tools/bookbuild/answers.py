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


NUMERIC_ANSWERS: dict[str, tuple[tuple[Answer, ...], bool]] = {
    # label: (the numbers, whether a prose answer is asked for as well)
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
