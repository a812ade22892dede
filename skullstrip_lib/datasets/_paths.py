"""Where the data lives and what its files are called.

The data directory (:func:`get_data_dir`: an argument, ``SKULLSTRIP_DATA``, or
``~/skullstrip_data``); NFBS's address, archive, folder and file names
(:func:`nfbs_filenames`, the one place the naming pattern is written), and the
index's columns and split names. Everything else in :mod:`skullstrip_lib.datasets`
imports these names from here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InvalidInputError

NFBS_URL: str = "https://fcp-indi.s3.amazonaws.com/data/Projects/RocklandSample/NFBS_Dataset.tar.gz"
"""Public address of the NFBS archive."""


NFBS_KNOWN_HASH = "md5:06c467ac9ab6cbdb8185e6643879721d"
"""MD5 of the archive as reported by a third party (not verified by us)."""


NFBS_SIZE = 1_751_464_473
"""Size of the archive in bytes as reported by a third party (not verified by us)."""


NFBS_ARCHIVE = "NFBS_Dataset.tar.gz"


NFBS_FOLDER = "NFBS_Dataset"


ENV_DATA_DIR = "SKULLSTRIP_DATA"


ENV_NFBS_HASH = "SKULLSTRIP_NFBS_HASH"


ENV_NFBS_URL = "SKULLSTRIP_NFBS_URL"


DEFAULT_DATA_DIR = "~/skullstrip_data"


MARKER_NAME = ".complete.json"


INDEX_COLUMNS = ("subject", "t1w", "brainmask", "brain", "split")


SPLITS = ("train", "val", "test")


NFBS_SESSION = "NFB3"


_KINDS = ("t1w", "brainmask", "brain")
SUBJECT_ID = re.compile(r"[A-Za-z0-9_-]+")
"""What a subject id may be: a label of letters, digits, ``-`` and ``_``, never a path.

Output paths are built from ids (``OUT/<id>/<id>_T1w.nii.gz``): an id such as
``..``, ``""``, ``.`` or ``/data/A1/sub-A1_ses-NFB3`` would write outside the
output folder, into its root, or over the raw scan itself."""


_SUFFIX = {"t1w": "", "brainmask": "_brainmask", "brain": "_brain"}


_FILE_RE = re.compile(
    r"^sub-(?P<subject>[A-Za-z0-9]+)_ses-(?P<session>[A-Za-z0-9]+)_T1w"
    r"(?P<suffix>_brainmask|_brain)?\.nii\.gz$"
)


def nfbs_filenames(subject: str, session: str = NFBS_SESSION) -> dict[str, str]:
    """The three NFBS file names of a subject: the head, its brain mask, its stripped brain.

    The one place the NFBS naming pattern is written (the index, the download
    and the synthetic data sets all use it).

    Examples
    --------
    >>> nfbs_filenames("A00028185")["brainmask"]
    'sub-A00028185_ses-NFB3_T1w_brainmask.nii.gz'
    """
    return {k: f"sub-{subject}_ses-{session}_T1w{_SUFFIX[k]}.nii.gz" for k in _KINDS}


def get_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder where datasets are stored, creating it if missing.

    The folder is, in this order: *data_dir* if given, else the environment
    variable ``SKULLSTRIP_DATA`` if set and not empty, else ``~/skullstrip_data``.
    A leading ``~`` is expanded.

    Parameters
    ----------
    data_dir : str or path-like or None
        An explicit folder; wins over the environment variable.

    Returns
    -------
    pathlib.Path
        The absolute path of the (now existing) folder.

    Raises
    ------
    InvalidInputError
        The path exists and is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> get_data_dir(tmp + "/data").name
    'data'
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR
    path = Path(os.path.abspath(Path(data_dir).expanduser()))
    if path.exists() and not path.is_dir():
        raise InvalidInputError(path, "the data directory exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path
