"""Book-build tooling: the chapters as handed out, outside the installed package.

``pip install skullstrip`` ships what a chapter calls while it runs
(:mod:`skullstrip_lib.lessons.notebook`); this package holds what only the
Makefile, an instructor and the tests run, from the repository root:

- :mod:`tools.bookbuild.editions`: the student edition and the Colab edition
  (``make student-edition``, ``make colab-edition``);
- :mod:`tools.bookbuild.nbgrader`: the nbgrader source notebooks (``make assignments``).
"""
