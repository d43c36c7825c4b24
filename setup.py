"""Build the optional compiled accelerator ``_speedups`` (the only thing this project builds).

``pip install -r requirements.txt`` runs ``pip install -e .``, which compiles
``_speedups.pyx`` next to the sources (Cython is fetched by pip for the build only, see
``pyproject.toml``). The extension is ``optional``: where no C compiler is found the install
goes on and ``data_processor``/``order_book`` use their pure-Python loops (same results,
slower replay; see the README's Performance section).

The build runs only as a script (setuptools executes this file as ``__main__``), so importing
it — as ``pytest --doctest-modules *.py`` does — builds nothing and needs no Cython.
"""

import hashlib
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("_speedups.pyx")


def source_digest() -> str:
    """SHA-256 of ``_speedups.pyx``; ``order_book`` uses a build only when it matches."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def main() -> None:
    """Cythonize and build ``_speedups`` (optional: a failed C compile is not an error)."""
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    setup(
        ext_modules=cythonize(
            [Extension("_speedups", ["_speedups.pyx"], optional=True,
                       define_macros=[("RLMM_SOURCE_SHA256", f'"{source_digest()}"')])],
            compiler_directives={"language_level": "3"},
            quiet=True,
        ),
    )


if __name__ == "__main__":
    main()
