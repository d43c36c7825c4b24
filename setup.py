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
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("_speedups.pyx")


def source_digest() -> str:
    """SHA-256 of ``_speedups.pyx``; ``order_book`` uses a build only when it matches."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def main() -> None:
    """Cythonize and build ``_speedups`` (optional: a failed C compile is not an error)."""
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    from setuptools.command.build_ext import build_ext
    from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

    class OptionalBuildExt(build_ext):
        """``build_ext`` that turns a failed compile or link into a warning.

        setuptools' own ``Extension(optional=True)`` does not cover editable installs (measured:
        with ``CC=/bin/false`` ``pip install -e .`` failed), so the failure is caught here.
        """

        def build_extension(self, ext: Extension) -> None:
            try:
                super().build_extension(ext)
            except (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError) as e:
                self.failed.append(ext.name)
                print(f"WARNING: the optional C accelerator {ext.name} was not built ({e}); "
                      "replay runs the same loops in pure Python (slower)", file=sys.stderr)

        def build_extensions(self) -> None:
            self.failed: list[str] = []
            super().build_extensions()
            # nothing to copy into the checkout or the wheel for an extension that failed
            self.extensions = [ext for ext in self.extensions if ext.name not in self.failed]

    setup(
        cmdclass={"build_ext": OptionalBuildExt},
        ext_modules=cythonize(
            [Extension("_speedups", ["_speedups.pyx"], optional=True,
                       define_macros=[("RLMM_SOURCE_SHA256", f'"{source_digest()}"')])],
            compiler_directives={"language_level": "3"},
            quiet=True,
        ),
    )


if __name__ == "__main__":
    main()
