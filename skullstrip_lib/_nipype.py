"""nipype without the network: the one switch, set for one run (a private base module)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["nipype_offline"]


@contextlib.contextmanager
def nipype_offline() -> Iterator[None]:
    """The one place this package quietens nipype's network check, for one run.

    nipype asks GitHub for its newest version when it is imported in an
    interactive session and whenever an interface is made, unless the
    environment holds ``NIPYPE_NO_ET`` (its only switch). A preprocessing run
    must not wait on the network, so the workflow
    (:func:`skullstrip_lib.workflow.run_preprocessing`) and the ANTs path of N4
    (:func:`skullstrip_lib.preprocess.n4_ants`) import and run nipype inside this
    block: it sets the variable if the user has not, and removes it again at the
    end, leaving the environment as it found it.

    Examples
    --------
    >>> import os
    >>> with nipype_offline():
    ...     os.environ["NIPYPE_NO_ET"]
    '1'
    >>> "NIPYPE_NO_ET" in os.environ
    False
    """
    if "NIPYPE_NO_ET" in os.environ:  # the user's choice stands
        yield
        return
    os.environ["NIPYPE_NO_ET"] = "1"
    try:
        yield
    finally:
        os.environ.pop("NIPYPE_NO_ET", None)
