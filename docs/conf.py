"""Sphinx configuration of the unfoldconv documentation (built by ``bash scripts/docs.sh``).

Offline by design: no intersphinx, no remote assets. ``-W`` turns every warning into an error;
``nitpicky`` makes every unresolved cross-reference a warning, except the names of other
packages listed in ``nitpick_ignore_regex`` (there is no offline inventory of torch's docs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# the checkout's package (not whatever unfoldconv is installed), and the experiments' packages
sys.path[:0] = [str(ROOT), str(ROOT / "experiments"), str(DOCS / "_ext")]
os.environ.setdefault("MPLBACKEND", "Agg")

import unfoldconv  # noqa: E402

project = "unfoldconv"
author = "the unfoldconv developers"
copyright = "2026, the unfoldconv developers"
release = version = unfoldconv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "unfoldconv_docs",  # docs/_ext: README tables, the public-API and gallery checks
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_generated",  # README tables, included by the guide pages
    "examples",  # the gallery's sources; sphinx-gallery writes auto_examples/ from them
    "Thumbs.db",
    ".DS_Store",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
]

# unfoldconv.curvature (API.md section 6) is built on its own branch: until it is merged, its
# pages and gallery example stay out of the build (the toctree entries named "curvature" are
# dropped by docs/_ext/unfoldconv_docs.py); once the module imports, they are built as the rest.
# (asked of this checkout's files: an editable install elsewhere would resolve the name anyway)
curvature_available = (ROOT / "unfoldconv" / "curvature" / "__init__.py").is_file()
CURVATURE_PAGES = ["guide/curvature.rst", "api/curvature.rst"]
if curvature_available:
    tags.add("curvature")  # noqa: F821 (Sphinx puts `tags` into conf.py's namespace)
else:
    exclude_patterns += CURVATURE_PAGES

# -- cross-references -----------------------------------------------------------------------
# no math markup: Sphinx's math renderer (MathJax) would load from a CDN; formulas are code
nitpicky = True
nitpick_ignore_regex = [
    # other packages' names in signatures and docstrings (no offline inventory to link them to)
    (r"py:.*", r"(torch|typing|collections|numpy|np|nn|F|timm|unfoldNd|triton|lightning)(\..*)?"),
    (r"py:.*", r"(Tensor|Module|Parameter|Sequence|Callable|Iterator|Any|Literal|Union|Optional)"),
    (r"py:.*", r"(int|float|str|bool|tuple|list|dict|None|type|object)"),
    # private modules and names that public docstrings point to for the details of how: the
    # reference documents the public API only (the source is one click away in the repository)
    (r"py:.*", r"~?unfoldconv(\.\w+)*\._\w+(\.\w+)*"),
]

# -- autodoc / autosummary / napoleon ---------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autoclass_content = "class"
# an override without a docstring (FoldNd.forward) shows nothing rather than its parent's text,
# whose relative references (":func:`fold`") do not resolve in the subclass's module
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Shape": torch's docstring section for the size formulas; "Attributes" rendered like "Args"
# (a list; several names in one entry, ``patch_size, stride, padding: ...``, stay one entry)
napoleon_custom_sections = ["Shape", ("Attributes", "params_style")]

# -- gallery -----------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every example is executed
    # the KFAC example needs unfoldconv.curvature (see curvature_available above)
    "ignore_pattern": r"__init__\.py" if curvature_available else r"__init__\.py|plot_kfac",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "unfoldconv_docs.GalleryOrder",  # docs/_ext: reading order
    "show_memory": False,
    "write_computation_times": False,  # its page loads a table script from a CDN (offline!)
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib", "seaborn"),
}
#: each gallery example's budget in seconds (2 CPU cores): reported past it, an error past twice
gallery_time_limit_s = 30.0

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"unfoldconv {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["unfoldconv.css"]
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "icon_links": [],  # no public home yet: no invented project links
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_context = {"default_mode": "light"}
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
