"""The book's prose pages: what they quote from the library is what the library says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = "\n".join(p.read_text() for p in [*(ROOT / "skullstrip_lib").rglob("*.py"),
                                              *(ROOT / "notebooks").glob("*.ipynb")])
# Messages split over adjacent string literals ("...one " \n "GPU)") read as one string.
SOURCES = re.sub(r'"\s*\n\s*f?"', "", SOURCES)


def _quoted_messages(page: str) -> list[str]:
    """The messages a page's FAQ quotes: text in double quotes inside its errors section."""
    errors = page.split("## Errors students meet most", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'"([^"\n]{8,})"', errors)


def test_next_steps_quotes_messages_the_library_prints():
    page = (ROOT / "book" / "next_steps.md").read_text()
    quoted = _quoted_messages(page)
    assert len(quoted) >= 4
    for message in quoted:
        # "batch N", "batch M": the numbers the message fills in.
        pattern = re.sub(r"\b[NM]\b", ".+?", re.escape(message))
        pattern = pattern.replace(r"the\ full\ profile", r"the\ \{profile\}\ profile")
        assert re.search(pattern, SOURCES), f"next_steps.md quotes {message!r}, which no " \
                                            "library message or chapter contains"


@pytest.mark.parametrize("page", sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.name)
def test_pages_link_to_files_that_exist(page):
    for target in re.findall(r"\]\((\.\./[^)#]+)", page.read_text()):
        assert (page.parent / target).resolve().exists(), f"{page.name} links to {target}"
