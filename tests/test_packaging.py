"""The sdist and the wheel build, pass ``twine check``, and the wheel installs and imports.

The wheel goes into a fresh venv that sees this interpreter's packages
(``--system-site-packages``: torch and einops are not downloaded again, no CUDA torch is
pulled) and is installed with ``--no-deps``; it must shadow any other unfoldconv install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

import unfoldconv

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = ["unfoldconv", "unfoldconv.layers", "unfoldconv.compat"]
if (ROOT / "unfoldconv" / "curvature" / "__init__.py").is_file():  # once merged
    PUBLIC_MODULES.append("unfoldconv.curvature")

pytestmark = pytest.mark.slow  # about 20-30 s on 2 busy cores: build, venv, install, import


def run(*args: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build`` of this checkout (sdist, then the wheel from the sdist), offline:
    ``--no-isolation`` builds with the installed setuptools."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=ROOT)
    return out


def test_sdist_and_wheel_pass_twine_check(dist):
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in dist.iterdir())
    output = run(sys.executable, "-m", "twine", "check", "--strict", *sdists, *wheels, cwd=dist)
    assert output.count("PASSED") == 2, output


def test_wheel_contents(dist):
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "unfoldconv/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"unfoldconv", wheel.name.split("-py3")[0] + ".dist-info"}, top_level
    for left_out in ("tests/", "experiments/", "docs/", "_build/", "configs/"):
        assert not any(left_out in name for name in names), left_out


def test_sdist_contents(dist):
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "unfoldconv/py.typed"):
        assert needed in names, needed
    for left_out in ("tests/", "experiments/", "docs/", ".ci/"):
        assert not any(name.startswith(left_out) for name in names), left_out


def test_one_version_source(dist):
    """The metadata's version is ``unfoldconv.__version__`` (pyproject reads it from there)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert "version" not in pyproject["project"]
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"unfoldconv-{unfoldconv.__version__}-")
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert f"\nVersion: {unfoldconv.__version__}\n" in text
    assert "\nLicense-Expression: MIT\n" in text


def test_wheel_installs_and_imports_in_a_fresh_venv(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    # this interpreter's pip, run as the venv's python: no pip download for the venv
    pip_path = Path(__import__("pip").__file__).parents[1]
    run(python, "-c", f"import sys; sys.path.insert(0, {str(pip_path)!r}); "
        "from pip._internal.cli.main import main; "
        f"sys.exit(main(['install', '--quiet', '--no-deps', '--no-index', {str(wheel)!r}]))",
        cwd=tmp_path)  # fmt: skip
    script = (
        "import importlib, pathlib, sys\n"
        f"for name in {PUBLIC_MODULES!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    for attr in module.__all__: getattr(module, attr)\n"
        "import unfoldconv, torch\n"
        "where = pathlib.Path(unfoldconv.__file__)\n"
        f"assert where.is_relative_to({str(env_dir)!r}), where\n"
        "assert (pathlib.Path(unfoldconv.__file__).parent / 'py.typed').exists()\n"
        "x = torch.randn(1, 2, 5, 5)\n"
        "torch.testing.assert_close(unfoldconv.fold(unfoldconv.unfold(x, 1), (5, 5), 1), x)\n"
        "print(unfoldconv.__version__)\n"
    )
    assert run(python, "-c", script, cwd=tmp_path).strip() == unfoldconv.__version__
