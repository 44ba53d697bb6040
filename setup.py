"""Package discovery for the mapped layout (metadata lives in pyproject.toml).

Each top-level folder (generators/, service/, trainer/, clients/, experiments/) installs as
`longweave.<folder>` together with every subpackage under it; `longweave` itself is a namespace
package, so the layout on disk shows the architecture. setuptools' declarative `packages.find`
cannot add the `longweave.` prefix, hence this file: a new subpackage ships without editing a list.
Non-Python files a package reads at run time are named in `package_data` (the Lua scripts that
service/scripts.py loads with importlib.resources).
"""

from setuptools import find_packages, setup

ROOTS = ("generators", "service", "trainer", "clients", "experiments")

setup(
    package_dir={f"longweave.{root}": root for root in ROOTS},
    packages=[f"longweave.{root}{sub}" for root in ROOTS for sub in ["", *(f".{p}" for p in find_packages(root))]],
    package_data={"longweave.service": ["lua/*.lua"]},
)
