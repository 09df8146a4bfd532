"""Sphinx extension of the unfoldconv docs: shared tables and the build's own checks.

- **README tables**: each table the README and the docs both show is written once, in
  ``README.md``; :func:`write_readme_tables` converts it to a reST ``list-table`` under
  ``docs/_generated/`` at the start of the build, and the guide pages include that file. A table
  missing from the README fails the build.
- **Public API**: every name in ``__all__`` of the public modules (:data:`PUBLIC_MODULES`) must be
  documented (a ``py`` object of the API reference), else the build warns (``-W``: fails).
- **Gallery**: every executed example must have made at least one figure; one that runs over
  ``gallery_time_limit_s`` (``conf.py``) is reported, and one over twice that fails the build
  (wall time on a shared machine is noisy: the margin keeps a busy neighbour from failing CI).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: modules whose ``__all__`` the API reference must cover (``unfoldconv.curvature`` once present)
PUBLIC_MODULES = ("unfoldconv", "unfoldconv.layers", "unfoldconv.compat", "unfoldconv.curvature")

#: README tables shown in the docs: name -> the table's header row in README.md
README_TABLES = {
    "allcnnc": "| variant | time_per_epoch_s |",
    "backends": "| backend | runs |",
    "vit_stems": "| stem | time/epoch (s) |",
    "curvature_cost": "| op (series) | compared with |",
}


#: the gallery's reading order (files not listed go last, by name)
GALLERY_ORDER = (
    "plot_unfold_fold.py",
    "plot_conv_as_matmul.py",
    "plot_locally_connected_3d.py",
    "plot_patch_embed.py",
    "plot_per_sample_gradients.py",
    "plot_kfac.py",
    "plot_benchmark.py",
)


class GalleryOrder:
    """sphinx-gallery's ``within_subsection_order``: :data:`GALLERY_ORDER`, then by name."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        rank = GALLERY_ORDER.index(filename) if filename in GALLERY_ORDER else len(GALLERY_ORDER)
        return rank, filename

    def __repr__(self) -> str:  # sphinx-gallery stores the config: a stable repr, no rebuilds
        return "GalleryOrder"


def markdown_table(text: str, header_start: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table whose header line starts ``header_start``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    if not starts:
        raise ValueError(f"README.md has no table whose header starts {header_start!r}")
    rows = []
    for line in lines[starts[0] :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):  # skip the |---| rule
            rows.append(cells)
    return rows


def markdown_inline_to_rst(cell: str) -> str:
    """``code`` and **bold** as reST writes them (the only inline Markdown the tables use)."""
    cell = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", cell)
    return cell


def list_table(rows: list[list[str]]) -> str:
    """The rows as a reST ``list-table`` with one header row."""
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        for j, cell in enumerate(row):
            out.append(f"   {'*' if j == 0 else ' '} - {markdown_inline_to_rst(cell)}")
    return "\n".join(out) + "\n"


def write_readme_tables(app: Sphinx) -> None:
    """``builder-inited``: write ``docs/_generated/readme_<name>.rst`` for each README table."""
    readme = (Path(app.srcdir).parent / "README.md").read_text()
    out_dir = Path(app.srcdir) / "_generated"
    out_dir.mkdir(exist_ok=True)
    for name, header in README_TABLES.items():
        text = ".. generated from README.md by docs/_ext/unfoldconv_docs.py: edit it there\n\n"
        text += list_table(markdown_table(readme, header))
        path = out_dir / f"readme_{name}.rst"
        if not path.exists() or path.read_text() != text:  # unchanged: no rebuild of its pages
            path.write_text(text)


def public_modules() -> dict:
    """``{name: module}`` of the public modules that this checkout has (``unfoldconv.curvature``
    only once merged; asked of the files, as an editable install elsewhere resolves names too)."""
    root = Path(__file__).resolve().parents[2]
    present = [m for m in PUBLIC_MODULES if (root / m.replace(".", "/")).exists()
               or (root / (m.replace(".", "/") + ".py")).exists()]  # fmt: skip
    return {name: importlib.import_module(name) for name in present}


def public_names() -> list[str]:
    """``module.name`` for every name in ``__all__`` of the public modules."""
    modules = public_modules()
    return [f"{name}.{attr}" for name, module in modules.items() for attr in module.__all__]


def check_public_api(app: Sphinx, env) -> None:
    """``env-check-consistency``: warn for each public name without an API entry."""
    documented = set(env.get_domain("py").objects)
    missing = [name for name in public_names() if name not in documented]
    for name in missing:
        logger.warning(f"public name {name} (in __all__) is missing from the API reference")


def check_gallery(app: Sphinx, exception: Exception | None) -> None:
    """``build-finished``: warn for an example without a figure or over the time limit."""
    if exception is not None or app.builder.name != "html":
        return
    conf = app.config.sphinx_gallery_conf
    src = Path(app.srcdir) / conf["examples_dirs"]
    out = Path(app.srcdir) / conf["gallery_dirs"]
    ignore = re.compile(conf["ignore_pattern"])
    limit = app.config.gallery_time_limit_s
    for example in sorted(src.glob("plot_*.py")):
        if ignore.search(str(example)):
            continue
        if not (out / "images" / f"sphx_glr_{example.stem}_001.png").exists():
            logger.warning(f"gallery example {example.name} made no figure")
        seconds = execution_time(out / f"{example.stem}.rst")
        if seconds > 2 * limit:  # a failure: far over budget, not a busy machine's noise
            logger.warning(
                f"gallery example {example.name} took {seconds:.1f} s "
                f"(budget {limit:.0f} s on 2 CPU cores; the build fails past twice that)"
            )
        elif seconds > limit:
            logger.info(f"gallery example {example.name} took {seconds:.1f} s: over its budget")


def execution_time(path: Path) -> float:
    """Seconds an example ran, from the ``Total running time`` line sphinx-gallery writes into
    its page (``auto_examples/<name>.rst``); 0 when the page is missing."""
    if not path.exists():
        return 0.0
    found = re.search(r"Total running time of the script:\*\* \((\d+) minutes ([\d.]+) seconds\)",
                      path.read_text())  # fmt: skip
    return 60 * int(found.group(1)) + float(found.group(2)) if found else 0.0


def public_bases(app, name, obj, options, bases: list) -> None:
    """Show a layer's bases by their public names: a private base (``_FixedDimConv``,
    ``NativeTwin``) is replaced by its own bases, an unfoldconv class by its public path."""
    public = {}
    for module_name, module in public_modules().items():
        for attr in module.__all__:
            public.setdefault(id(getattr(module, attr)), f"{module_name}.{attr}")

    def expand(base) -> list:
        if id(base) in public:
            return [public[id(base)]]
        module = getattr(base, "__module__", "")
        if module.startswith("unfoldconv"):
            return [b for parent in base.__bases__ for b in expand(parent)]
        if module.startswith("torch.nn.modules") and hasattr(torch.nn, base.__name__):
            return [f"torch.nn.{base.__name__}"]  # the name torch documents it under
        return [base]

    shown = []
    for base in bases:
        for entry in expand(base):
            if entry not in shown:
                shown.append(entry)
    bases[:] = [f":py:class:`{e}`" if isinstance(e, str) else e for e in shown]


def drop_curvature_entries(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read``: without ``unfoldconv.curvature``, drop the toctree entries named
    ``curvature`` (their pages are excluded in ``conf.py``) and the ``.. only:: curvature``
    blocks (Sphinx would still resolve their references, and warn)."""
    if app.config.curvature_available:
        return
    text = re.sub(r"^\.\. only:: curvature\n(?:\n|[ \t]+.*\n)*", "", source[0], flags=re.M)
    if docname.endswith("index"):
        text = "".join(line for line in text.splitlines(True) if line.strip() != "curvature")
    source[0] = text


SECTION = re.compile(r"^\s*(Args|Arguments|Attributes|Parameters):\s*$")
NAMES_CONTINUED = re.compile(r"^\s+\w+(,\s*\w+)*,\s*$")  # "    a, b, c," (the names go on)


def google_docstring_habits(app, what, name, obj, options, lines: list[str]) -> None:
    """``autodoc-process-docstring``, before napoleon: two Google-style habits of this code
    base that napoleon misreads, rewritten to what it reads.

    - An entry of ``Args:`` / ``Attributes:`` whose list of names wraps onto the next line
      (``kernel_size, stride, ...,`` then ``output_padding: the layer's``) is joined into one
      line.
    - A property whose first line reads ``Some words: description`` would be parsed as
      ``type: description``; its colon becomes a dash.
    """
    in_section = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if SECTION.match(line):
            in_section = True
        elif line and not line[0].isspace():
            in_section = False
        elif in_section and NAMES_CONTINUED.match(line) and i + 1 < len(lines):
            lines[i : i + 2] = [line.rstrip() + " " + lines[i + 1].strip()]
            continue
        i += 1
    if what == "property" and lines:
        head, colon, tail = lines[0].partition(": ")
        if colon and " " in head.strip():
            lines[0] = f"{head} — {tail}"


def setup(app: Sphinx) -> dict:
    """Register the config values and the event handlers."""
    app.add_config_value("curvature_available", False, "env")
    app.connect("source-read", drop_curvature_entries)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("autodoc-process-docstring", google_docstring_habits, priority=400)
    app.add_config_value("gallery_time_limit_s", 30.0, "env")
    app.connect("builder-inited", write_readme_tables)
    app.connect("env-check-consistency", check_public_api)
    app.connect("build-finished", check_gallery)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
