"""NFBS download, data directory, subject index and train/val/test split.

:func:`fetch_nfbs` (:mod:`~skullstrip_lib.datasets.nfbs`, where the archive's
layout is described) downloads NFBS whole or streams the first N subjects into
the data directory (:func:`get_data_dir`), every file checked, and records what
it extracted so that a second call does nothing. :func:`index_dataset`
(:mod:`~skullstrip_lib.datasets.index`) pairs the three files of every subject
and assigns a seeded, subject-level split; :func:`write_index` and
:func:`read_index` store that table as CSV.

The plumbing is private: the data directory and the NFBS names (``_paths``),
the download and the stream (``_download``), safe extraction and file checks
(``_archive``) and the completion record (``_record``). Every public name is
here: ``from skullstrip_lib.datasets import fetch_nfbs``.
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
    SUBJECT_ID,
    get_data_dir,
    nfbs_filenames,
)
from .index import (
    IndexExistsError,
    check_subject_id,
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
    "SUBJECT_ID",
    "IndexExistsError",
    "check_subject_id",
    "fetch_nfbs",
    "find_subjects",
    "get_data_dir",
    "index_dataset",
    "nfbs_filenames",
    "read_index",
    "split_subjects",
    "write_index",
]
