"""The book's Sphinx extension: one copy of each script, launch buttons on notebook pages only."""

from types import SimpleNamespace

from vitcf.book import site


class Script:
    """As Sphinx's _JavaScript: a file name, a priority, attributes (an inline script's body among them)."""

    def __init__(self, filename, body=None, priority=500):
        self.filename, self.priority = filename, priority
        self.attributes = {} if body is None else {"body": body}

    def __str__(self):
        return f"Script({self.filename!r}, priority={self.priority}, {self.attributes})"


def test_a_script_registered_twice_is_kept_once_in_its_place():
    scripts = [Script("a.js"), Script(None, 'const THEBE_JS_URL = "x"'), Script("b.js"),
               Script("", 'const THEBE_JS_URL = "x"', priority=501), Script("a.js"), Script(None, "other()")]
    kept = site.unique_scripts(scripts)
    assert [(s.filename, s.attributes.get("body")) for s in kept] == [
        ("a.js", None), (None, 'const THEBE_JS_URL = "x"'), ("b.js", None), (None, "other()")]


def page(sourcename):
    launch = {"label": site.LAUNCH_GROUP, "buttons": ["colab"]}
    return {"sourcename": sourcename, "header_buttons": [{"label": "download-buttons"}, launch],
            "script_files": [Script("x.js"), Script("x.js")], "body": ""}


def test_launch_buttons_stay_on_notebook_pages_only():
    app = SimpleNamespace()
    markdown, notebook = page("book/intro.md"), page("notebooks/mini_study.ipynb")
    site._tidy_page(app, "book/intro", "page.html", markdown, None)
    site._tidy_page(app, "notebooks/mini_study", "page.html", notebook, None)
    assert [b["label"] for b in markdown["header_buttons"]] == ["download-buttons"]
    assert [b["label"] for b in notebook["header_buttons"]] == ["download-buttons", site.LAUNCH_GROUP]
    assert len(markdown["script_files"]) == 1
