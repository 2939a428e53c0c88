"""The book's Sphinx extension: local charts that fit the column, and pages without the theme's slips.

Listed in the book's _config.yml (`sphinx: extra_extensions: [vitcf.book.bookext]`), it
- writes the Vega bundle (`vitcf.book.plots.write_vega_bundle`) and the charts' stylesheet into the built
  book, and loads the bundle on exactly the pages that show a chart;
- keeps one copy of each inline script (sphinx-thebe registers its configuration twice, and the
  browser then stops on "Identifier 'THEBE_JS_URL' has already been declared");
- shows the launch buttons (Colab, Binder) on notebook pages only: a Markdown page cannot be opened
  in Colab.
The theme's light/dark mode default lives in _config.yml (`html_context.default_mode`).
"""

from __future__ import annotations

from pathlib import Path

from vitcf.book.plots import BUNDLE_NAME, CHART_CLASS, write_static, write_vega_bundle

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
