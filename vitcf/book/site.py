"""The built book's side of the charts: the local Vega bundle, chart embedding, and the Sphinx extension.

The book is read offline and must not fetch Vega from a CDN. `write_vega_bundle` writes one local
file holding Vega, Vega-Lite and vega-embed (vl-convert's bundle, about 0.9 MB), and `embed` renders
a chart against it. Listed in the book's _config.yml (`sphinx: extra_extensions: [vitcf.book.site]`),
this module is also a Sphinx extension that
- writes the bundle and the charts' stylesheet into the built book, and loads the bundle on exactly
  the pages that show a chart;
- keeps one copy of each inline script (sphinx-thebe registers its configuration twice, and the
  browser then stops on "Identifier 'THEBE_JS_URL' has already been declared");
- shows the launch buttons (Colab, Binder) on notebook pages only: a Markdown page cannot be opened
  in Colab.
The theme's light/dark mode default lives in _config.yml (`html_context.default_mode`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import tempfile
from pathlib import Path

import altair as alt


BUNDLE_NAME = "vitcf-vega.js"
CHART_CLASS = "vitcf-vega"  # marks an embedded chart in a page, so the bundle is loaded only there


# --- offline Vega for the built book -------------------------------------------------------------

def _vegalite_version() -> str:
    """Altair's Vega-Lite (major.minor) when vl-convert ships it, else vl-convert's newest.

    Specs are forward compatible within a major version, so a newer runtime is the safe fallback.
    """
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    return wanted if wanted in available else available[-1]


@functools.cache
def _vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script with no external dependency.

    It defines window.vegaEmbed, window.vega and window.vegaLite and nothing else: vl-convert emits
    module code with top-level `const` names (`_` among them) that, loaded as a classic script,
    would share the page's global scope and collide with Sphinx's own `const _` (a SyntaxError
    that loses the whole bundle), so it is wrapped in a function. It uses no module loader, so
    require.js on the same page does not interfere. Building it takes a few seconds: cached.
    """
    import vl_convert as vlc

    version = _vegalite_version()
    header = (f"/* {BUNDLE_NAME}: Vega {vlc.get_vega_version()}, Vega-Lite {version}, vega-embed "
              f"{vlc.get_vega_embed_version()}, bundled by vl-convert-python for vitcf.book.site.embed */\n")
    return f"{header}(function () {{\n{vlc.javascript_bundle(vl_version=version)}\n}})();\n"


def write_vega_bundle(static_dir: str | os.PathLike) -> Path:
    """Write the bundle as `static_dir`/vitcf-vega.js; an identical file is left untouched.

    Leaving it untouched keeps its timestamp, so incremental builds and browser caches see no change.
    The write goes through a temporary file and a rename, so a crash never leaves half a script
    (and a parallel build never reads one).
    """
    return write_static(Path(static_dir) / BUNDLE_NAME, _vega_bundle())


def write_static(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a temporary file, then a rename); an identical file is left as is."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a web server must be able to read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_EMBED_OPTIONS = {
    "mode": "vega-lite",
    "renderer": "svg",  # text stays text: searchable, selectable, and crisp when zoomed
    # Export (SVG/PNG) works offline; the source, compiled and editor actions open web pages.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

_EMBED_SCRIPT = """(function () {
  var element = document.getElementById("@ID@");
  var spec = @SPEC@;
  function draw() {
    if (typeof window.vegaEmbed !== "function") {
      element.textContent = "This chart needs the book's local Vega bundle (@BUNDLE@), which is not loaded here. " +
        "In Jupyter, display the Altair chart object itself.";
      return;
    }
    window.vegaEmbed(element, spec, @OPTIONS@).catch(function (error) {
      element.textContent = "The chart failed to render: " + error;
      console.error(error);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();"""

_EMBED_COUNT = itertools.count()


def _script_json(data) -> str:
    """JSON that is safe inside a <script> element ('</script>' or '<!--' in a label cannot end it)."""
    return json.dumps(data, sort_keys=True).replace("<", "\\u003c")


def embed(chart):
    """An HTML display of `chart` that draws with the book's local Vega bundle: no CDN, no kernel.

    The output is a div and an inline script calling window.vegaEmbed, which the page gets from
    vitcf-vega.js (see the module docstring). The spec's $schema (a URL, used only to guess the
    mode) is dropped and the mode given instead, so the page names no remote address at all.
    """
    from IPython.display import HTML

    spec = chart.to_dict()
    spec.pop("$schema", None)
    payload = _script_json(spec)
    # Deterministic ids keep rebuilt pages identical; the counter separates repeated charts.
    element = f"{CHART_CLASS}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}-{next(_EMBED_COUNT)}"
    script = (_EMBED_SCRIPT.replace("@ID@", element).replace("@BUNDLE@", BUNDLE_NAME)
              .replace("@OPTIONS@", _script_json(_EMBED_OPTIONS)).replace("@SPEC@", payload))
    return HTML(f'<div id="{element}" class="{CHART_CLASS}"></div>\n'
                f'<script type="text/javascript">\n{script}\n</script>')


# --- the Sphinx extension ------------------------------------------------------------------------

# Every chart fits the page's column, at any window width: a chart drawn wider than its column is
# scaled down as a whole (an SVG with a viewBox keeps its proportions), never clipped or scrolled; its
# sliders and dropdowns are HTML below it and wrap. Inline code (a long command or path) wraps too.
CHART_CSS_NAME = "vitcf-charts.css"
CHART_CSS = f""".{CHART_CLASS} {{ max-width: 100%; box-sizing: border-box; }}
.{CHART_CLASS} .chart-wrapper {{ max-width: 100%; }}
.{CHART_CLASS} svg.marks {{ max-width: 100%; height: auto; }}
.{CHART_CLASS} .vega-bindings {{ display: flex; flex-wrap: wrap; gap: 0.2em 1em; }}
.{CHART_CLASS} .vega-bind-radio label {{ margin: 0 0.9em 0 0.25em; white-space: nowrap; }}
article code.literal, article code.literal span.pre {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
"""
LAUNCH_GROUP = "launch-buttons"  # sphinx-book-theme's label of its launch-button group


def _write_assets(app) -> None:
    if app.builder.format == "html":
        write_vega_bundle(Path(app.outdir) / "_static")
        write_static(Path(app.outdir) / "_static" / CHART_CSS_NAME, CHART_CSS)


def _bundle_where_charts_are(app, pagename, templatename, context, doctree) -> None:
    # Called per page: Sphinx adds a script registered here to this page only. Deferred, it does not
    # hold up the page; `embed`'s scripts wait for DOMContentLoaded, which comes after it has run.
    if f'class="{CHART_CLASS}"' in context.get("body", ""):
        app.add_js_file(BUNDLE_NAME, loading_method="defer")


def unique_scripts(scripts: list) -> list:
    """`scripts` (Sphinx's `script_files` of a page) with each file or inline body kept once, in order."""
    seen, kept = set(), []
    for script in scripts:
        # By file and inline body only: the same inline script comes registered once with filename None and
        # once with "" (sphinx-thebe and sphinx-togglebutton add theirs twice).
        key = (str(getattr(script, "filename", script) or ""), getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _tidy_page(app, pagename, templatename, context, doctree) -> None:
    # After the theme's handlers at priority 501, which fill header_buttons; script_files is filled by then.
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])
    if ".ipynb" not in str(context.get("sourcename", "")) and "header_buttons" in context:
        context["header_buttons"] = [b for b in context["header_buttons"] if b.get("label") != LAUNCH_GROUP]


def setup(app) -> dict:
    """Sphinx entry point. The bundle and stylesheet are generated at build time into the output's
    _static folder (never committed, always matching the installed Altair and vl-convert)."""
    app.connect("builder-inited", _write_assets)
    app.connect("html-page-context", _bundle_where_charts_are)
    # Right after the theme fills the buttons (501): Sphinx stops calling page handlers at the first that
    # returns a template name, and a later one (a theme's) does.
    app.connect("html-page-context", _tidy_page, priority=502)
    app.add_css_file(CHART_CSS_NAME)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
