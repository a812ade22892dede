"""The built book, offline, in headless Chromium (tools/check_book.py).

``make book`` builds the book and runs the checker; these tests run it on ``_build/html``
when the book has been built and Chromium is installed (``apt-get install chromium``),
and are skipped, saying which is missing, otherwise: CI does not build the book. The
checker's own tests, on a two-page site made here with one problem of each kind, need
only Chromium and MathJax's files (the ``book`` extra's sphinx-mathjax-offline).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CONFIG = ROOT / "_config.yml"


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check_book = _load_checker()
BROWSER = check_book.find_browser()
needs_book = pytest.mark.skipif(
    not (HTML / "index.html").is_file(),
    reason="the book is not built (_build/html/index.html): `make book` builds it and runs "
           "this check; CI does not build the book")
needs_chromium = pytest.mark.skipif(
    BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")


def _problems(report) -> str:
    return "\n".join(map(str, report.problems))


@needs_book
def test_built_pages_load_nothing_off_the_site():
    report = check_book.check_book(HTML, config=CONFIG, static_only=True)
    assert report.pages and not report.problems, _problems(report)


@needs_book
@needs_chromium
def test_built_book_offline_in_chromium():
    pytest.importorskip("websocket", reason="websocket-client is not installed (book extra)")
    report = check_book.check_book(HTML, config=CONFIG)
    chapters = [p for p in report.pages if check_book.CHAPTER.match(p)]
    assert len(chapters) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    assert sum(s["mjx"] for s in report.stats.values()) > 0, "no typeset math anywhere"
    assert not report.problems, _problems(report)


def test_colab_url_follows_the_configured_repository(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/book.git/\n  branch: dev\n")
    assert check_book.colab_url(*check_book.repository(config), "03_x") == (
        "https://colab.research.google.com/github/someone/book/blob/dev/colab/03_x.ipynb")


def test_static_pass_flags_remote_scripts_and_styles_not_hyperlinks(tmp_path):
    (tmp_path / "index.html").write_text(
        '<script src="https://cdn.example.org/a.js"></script>'
        "<link rel=stylesheet href='//cdn.example.org/a.css'>"
        '<style>@import url("https://fonts.example.org/css");</style>'
        '<a href="https://example.org/">a plain link</a>'
        '<script src="_static/local.js"></script><link href="_static/local.css">')
    report = check_book.Report(pages=["index.html"])
    check_book.check_static(tmp_path, report.pages, report)
    assert sorted(p.kind for p in report.problems) == [
        "remote @import", "remote link", "remote script"]


def _mathjax_dir() -> Path:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.origin:
        pytest.skip("sphinx-mathjax-offline is not installed (book extra)")
    return Path(spec.origin).parent / "static" / "mathjax"


@needs_chromium
def test_checker_finds_each_kind_of_problem(tmp_path):
    pytest.importorskip("websocket", reason="websocket-client is not installed (book extra)")
    html = tmp_path / "_build" / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "_sources" / "notebooks").mkdir(parents=True)
    shutil.copytree(_mathjax_dir(), html / "_static" / "mathjax")
    (tmp_path / "_config.yml").write_text(
        "repository:\n  url: https://github.com/skullstrip/skullstrip\n  branch: main\n")
    head = '<head><script defer src="%s_static/mathjax/tex-chtml.js"></script></head>'
    # A good page: typeset math, a loaded image, the right badge and download.
    (html / "_static" / "dot.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" '
        'height="4"/></svg>')
    (html / "_sources" / "notebooks" / "01_good.ipynb").write_text('{"cells": [{}]}')
    (html / "notebooks" / "01_good.html").write_text(
        "<html>" + head % "../" + '<body><span class="math">\\(a^2\\)</span>'
        '<div class="math">\\[\\sum_i x_i\\]</div><img src="../_static/dot.svg">'
        '<a href="https://colab.research.google.com/github/skullstrip/skullstrip/blob/main/'
        'colab/01_good.ipynb"><img src="../_static/dot.svg"></a>'
        '<a href="../_sources/notebooks/01_good.ipynb">.ipynb</a></body></html>')
    # A bad page: one of each problem (math, but no MathJax: raw TeX is left).
    (html / "notebooks" / "02_bad.html").write_text(
        '<html><body><span class="math">\\(x\\)</span><img src="../_static/missing.png">'
        '<a href="https://colab.research.google.com/github/skullstrip/skullstrip/blob/main/'
        'notebooks/02_bad.ipynb">Colab</a><a href="../nowhere.html">gone</a>'
        '<div class="cell_output"><pre>Traceback (most recent call last):\n  boom</pre></div>'
        '<script>undefinedFunction()</script>'
        '<script src="https://cdn.example.org/x.js"></script></body></html>')
    (html / "index.html").write_text("<html><body><p>no math here</p></body></html>")

    good = check_book.check_book(html, only="notebooks/01_*")
    assert not good.problems, _problems(good)
    assert good.stats["notebooks/01_good.html"]["mjx"] == 2

    bad = check_book.check_book(html, only="notebooks/02_*", wait_s=3)
    kinds = {p.kind for p in bad.problems}
    assert {"remote script", "network", "javascript", "math", "image", "link", "output",
            "colab", "download"} <= kinds, _problems(bad)
