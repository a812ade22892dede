"""Preprocessing: bias-field correction, the model grid, intensity normalisation.

The steps, in the order the book teaches them:

1. :func:`head_mask` finds the head (Otsu threshold, largest component, holes
   filled) so later steps know where the signal is.
2. :func:`n4_correct` removes the smooth intensity non-uniformity (the *bias
   field*) with SimpleITK's N4; :func:`n4_ants` does the same through nipype's
   interface to the ANTs program when ANTs is installed.
3. :func:`fit_model_grid` places the network's fixed grid (96x128x160 voxels of
   2 mm by default) on the head, and :func:`to_model_grid` /
   :func:`from_model_grid` resample onto it and back. The grid is defined in
   world coordinates (mm), so a prediction maps back onto the scan's own voxel
   grid whatever its orientation, voxel size or obliquity.
4. :func:`normalize_intensity` puts intensities on a common scale (z-score or
   min-max, after clipping outlier percentiles).

:func:`preprocess_subject` runs them for one subject and writes the result;
:mod:`skullstrip_lib.workflow` runs it for many subjects with nipype.

One step a module: :mod:`~skullstrip_lib.preprocess.headmask`,
:mod:`~skullstrip_lib.preprocess.bias`, :mod:`~skullstrip_lib.preprocess.grid`,
:mod:`~skullstrip_lib.preprocess.intensity`, and
:mod:`~skullstrip_lib.preprocess.subject` (the settings, the steps in order, the
cache). Every public name is here too: ``from skullstrip_lib.preprocess import
prepare_input``.
"""

from .bias import (
    N4_BACKENDS,
    N4_CONVERGENCE,
    N4_FIT_SPACING_MM,
    N4_ITERATIONS,
    n4_ants,
    n4_ants_command,
    n4_correct,
    n4_shrink_factors,
)
from .grid import (
    INTERPOLATIONS,
    MODEL_SHAPE,
    MODEL_SPACING,
    ModelGrid,
    bounding_box,
    box_corners,
    fit_model_grid,
    from_model_grid,
    to_model_grid,
)
from .headmask import head_mask
from .intensity import (
    NORMALIZATIONS,
    normalize_intensity,
)
from .subject import (
    PreprocessConfig,
    cache_key,
    is_complete,
    output_paths,
    prepare_input,
    preprocess_subject,
)

__all__ = [
    "INTERPOLATIONS",
    "MODEL_SHAPE",
    "MODEL_SPACING",
    "N4_BACKENDS",
    "N4_CONVERGENCE",
    "N4_FIT_SPACING_MM",
    "N4_ITERATIONS",
    "NORMALIZATIONS",
    "ModelGrid",
    "PreprocessConfig",
    "bounding_box",
    "box_corners",
    "cache_key",
    "fit_model_grid",
    "from_model_grid",
    "head_mask",
    "is_complete",
    "n4_ants",
    "n4_ants_command",
    "n4_correct",
    "n4_shrink_factors",
    "normalize_intensity",
    "output_paths",
    "prepare_input",
    "preprocess_subject",
    "to_model_grid",
]
