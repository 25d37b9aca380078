"""Post admin forms the way a browser does: what the page rendered, plus what the person typed."""

from html.parser import HTMLParser


class _FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""
        self._selected_any = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name:
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            if a.get("type") in ("submit", "button", "image", "file"):
                return
            self.values.setdefault(name, []).append(a.get("value", ""))
        elif tag == "select" and name:
            self._select, self._selected_any = name, False
        elif tag == "option" and self._select and "selected" in a:
            self.values.setdefault(self._select, []).append(a.get("value", ""))
            self._selected_any = True
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            text = self._text[1:] if self._text.startswith("\n") else self._text
            self.values.setdefault(self._textarea, []).append(text)
            self._textarea = None


def page_form(client, url: str, **overrides) -> dict:
    """The fields of the admin form at `url` as rendered (hidden initial values included),
    with `overrides` applied as a person's edits."""
    parser = _FormFields()
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    parser.feed(response.content.decode())
    data = {name: values if len(values) > 1 else values[0] for name, values in parser.values.items()}
    data.pop("csrfmiddlewaretoken", None)
    data.update(overrides)
    return data


def workflow_form_data(client, wf, **overrides) -> dict:
    from django.urls import reverse

    return page_form(client, reverse("admin:automation_workflow_change", args=[wf.pk]), **overrides)
