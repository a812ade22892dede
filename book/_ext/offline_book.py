"""The book's Sphinx build, made whole offline (checked by tools/check_book.py).

* Chapter badges: each chapter's first cell shows Colab's badge image from Colab's
  site (that is what GitHub and Colab show, and tests/test_chapters.py expects it in
  the notebook). In the book the image node is pointed at a local copy instead
  (book/_ext/colab-badge.svg), so the badge shows offline; the link is unchanged.
* sphinx-thebe's inline configuration script (``const THEBE_JS_URL = ...``) reaches
  every page twice (once through Sphinx's registry, once added to the builder
  directly), so every page threw "Identifier 'THEBE_JS_URL' has already been
  declared". Identical scripts are kept once per page.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes

REMOTE_BADGES = {"https://colab.research.google.com/assets/colab-badge.svg"}
LOCAL_BADGE = Path(__file__).with_name("colab-badge.svg")


def _local_badges(app, doctree) -> None:
    srcdir = Path(app.srcdir)
    for image in doctree.findall(nodes.image):
        if image.get("uri") in REMOTE_BADGES:
            # "/..." is relative to the source folder; Sphinx copies it into _images/.
            image["uri"] = "/" + LOCAL_BADGE.relative_to(srcdir).as_posix()
            image.attributes.pop("candidates", None)


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # The copy added through the registry has filename "", the other None.
        filename = getattr(js, "filename", js) or ""
        attributes = getattr(js, "attributes", {})
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # in place: later handlers (MathJax's) append to this list


def setup(app):
    # Before Sphinx's image collector (priority 500), which resolves and copies images.
    app.connect("doctree-read", _local_badges, priority=100)
    # Early: html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", _unique_scripts, priority=100)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
