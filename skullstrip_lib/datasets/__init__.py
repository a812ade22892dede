"""NFBS download, data directory, subject index and train/val/test split.

The Neurofeedback Skull-stripped repository (NFBS) is one archive,
``NFBS_Dataset.tar.gz`` (about 1.75 GB, 125 subjects), that unpacks to::

    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w.nii.gz            # the head
    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w_brainmask.nii.gz  # the brain mask
    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w_brain.nii.gz      # the skull-stripped head

:func:`fetch_nfbs` downloads it whole with :mod:`pooch` (MD5 check, retries,
progress bar), or streams it and stops once the N subjects a chapter needs are
complete (each file's gzip CRC-32 and NIfTI header checked), extracts safely
and atomically into the data directory, and records what it extracted, and how
it was verified, in ``NFBS_Dataset/.complete.json`` so that a second call does
nothing. :func:`index_dataset` pairs the three files of every subject by the
subject id in their names and assigns a seeded, subject-level split;
:func:`write_index` and :func:`read_index` store that table as CSV.

One idea a module: :mod:`~skullstrip_lib.datasets.nfbs` (:func:`fetch_nfbs`)
and :mod:`~skullstrip_lib.datasets.index` (the index and the split) are public;
the data directory and the NFBS names (``_paths``), the download and the stream
(``_download``), safe extraction and file checks (``_archive``) and the
completion record (``_record``) are private plumbing. Every public name is here
too: ``from skullstrip_lib.datasets import fetch_nfbs``.
"""

from ._archive import MAX_MEMBER_BYTES
from ._paths import (
    DEFAULT_DATA_DIR,
    ENV_DATA_DIR,
    ENV_NFBS_HASH,
    ENV_NFBS_URL,
    INDEX_COLUMNS,
    MARKER_NAME,
    NFBS_ARCHIVE,
    NFBS_FOLDER,
    NFBS_KNOWN_HASH,
    NFBS_SESSION,
    NFBS_SIZE,
    NFBS_URL,
    SPLITS,
    get_data_dir,
    nfbs_filenames,
)
from .index import (
    IndexExistsError,
    find_subjects,
    index_dataset,
    read_index,
    split_subjects,
    write_index,
)
from .nfbs import fetch_nfbs

__all__ = [
    "DEFAULT_DATA_DIR",
    "ENV_DATA_DIR",
    "ENV_NFBS_HASH",
    "ENV_NFBS_URL",
    "INDEX_COLUMNS",
    "MARKER_NAME",
    "MAX_MEMBER_BYTES",
    "NFBS_ARCHIVE",
    "NFBS_FOLDER",
    "NFBS_KNOWN_HASH",
    "NFBS_SESSION",
    "NFBS_SIZE",
    "NFBS_URL",
    "SPLITS",
    "IndexExistsError",
    "fetch_nfbs",
    "find_subjects",
    "get_data_dir",
    "index_dataset",
    "nfbs_filenames",
    "read_index",
    "split_subjects",
    "write_index",
]
