"""Build the optional compiled accelerator ``_speedups`` (the only thing this project builds).

``pip install -r requirements.txt`` runs ``pip install -e .``, which compiles
``_speedups.pyx`` next to the sources. The extension is ``optional``: where no C compiler is
found the install goes on and ``data_processor``/``order_book`` use their pure-Python loops
(same results, slower replay; see the README's Performance section).
"""

import hashlib
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

SOURCE = Path(__file__).resolve().with_name("_speedups.pyx")
# order_book uses the build only when this digest matches the checkout's source (no stale build)
DIGEST = hashlib.sha256(SOURCE.read_bytes()).hexdigest()

setup(
    ext_modules=cythonize(
        [Extension("_speedups", ["_speedups.pyx"], optional=True,
                   define_macros=[("RLMM_SOURCE_SHA256", f'"{DIGEST}"')])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    ),
)
