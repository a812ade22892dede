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

# Each module's __all__ lists its public names; the package re-exports them all.
from . import bias, grid, headmask, intensity, subject
from .bias import *
from .grid import *
from .headmask import *
from .intensity import *
from .subject import *

__all__ = [*bias.__all__, *grid.__all__, *headmask.__all__, *intensity.__all__, *subject.__all__]
