"""The confirmation of ``signature.extend``: which site asks, to which level, what the
agent will add, and the document (the page's name, text and the preview) in the tinted
frame that is marked as the site's.  No key and no PIN are used; "Extend" or "Cancel".

The focus starts on Cancel: a key meant for the page can only refuse.  Tab reaches the
preview, Extend and Cancel in reading order; Escape cancels.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QGroupBox, QVBoxLayout, QWidget

from agent.i18n import N_, _
from agent.ui.page_text import page_block, page_line
from agent.ui.qt import a11y
from agent.ui.qt.dialogs.base import Dialog, label
from agent.ui.qt.preview import preview_area, previews_from_wire, release
from agent.ui.qt.preview.text import text_box

PAGE_LINE_LIMIT = 300
PAGE_TEXT_LIMIT = 2000

FORMAT_TEXT = {
    "cms": N_("CMS signature (CAdES)"),
    "pdf": N_("signed PDF (PAdES)"),
    "xml": N_("signed XML (XAdES)"),
}

# What each level adds, said the same way for the three formats.
LEVEL_TEXT = {
    "T": N_("a time-stamp proving that the signatures existed at this time"),
    "LT": N_("the certificates and revocation answers needed to check the signatures "
             "later (and a time-stamp, if there is none yet)"),
    "LTA": N_("an archive time-stamp over the signatures and their validation data (a "
              "new one, if there is one already)"),
}


def level_key(level: str) -> str:
    """"B-LT" and "LT" say the same thing."""
    return level.removeprefix("B-")


class ExtendDialog(Dialog):
    kind = "extend"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.preview: QWidget | None = None
        self.site_area: QGroupBox | None = None
        super().__init__(*args, **kwargs)

    @property
    def level(self) -> str:
        return page_line(str(self.args.get("level") or ""), 16)

    def title_text(self) -> str:
        return _("Extend signatures")

    def headline_text(self) -> str:
        return _("This website asks to extend the signatures in a document to level "
                 "{level}.").format(level=self.level)

    def build(self) -> QWidget:
        self.preview, self.site_area = None, None
        what = FORMAT_TEXT.get(str(self.args.get("format")))
        if what:
            self.body.addWidget(label(_("Document: {what}").format(what=_(what))))
        count = self.args.get("signatures")
        if type(count) is int and count > 0:
            self.body.addWidget(label(_("Signatures to extend: {n}").format(n=count)))
        adds = LEVEL_TEXT.get(level_key(self.level))
        if adds:
            self.body.addWidget(label(_("The agent will add {what}.").format(what=_(adds))))
        self.body.addWidget(label(_("Your key and PIN are not used. The agent asks the "
                                    "time-stamping and revocation services it is set up "
                                    "with."), "small"))
        self._site_area()
        self.add_button(_("Extend"), lambda: self.finish("extend"))
        return self.add_button(_("Cancel"), self.cancel)

    def _site_area(self) -> None:
        """The tinted frame with everything the page sent (as the PIN dialog's)."""
        previews = previews_from_wire(self.args.get("previews"))
        name = str(self.args.get("document_name") or "")
        display = str(self.args.get("display_text") or "")
        if not name and not display and not previews:
            return
        host = self.site.unicode if self.site else ""
        title = _("Sent by {site} — not checked by the agent").format(site=host)
        area = self.site_area = QGroupBox()
        area.setObjectName("siteArea")
        a11y.name(area, title)
        inner = QVBoxLayout(area)
        inner.addWidget(label(title, "siteTitle"))
        if name:
            inner.addLayout(self.fact_grid([(_("Document"),
                                             page_line(name, PAGE_LINE_LIMIT))]))
        if display:
            inner.addWidget(text_box(page_block(display, PAGE_TEXT_LIMIT),
                                     _("Text sent by {site}").format(site=host), rows=6))
        self.preview = preview_area(previews)
        if self.preview is not None:
            inner.addWidget(self.preview)
        self.body.addWidget(area)

    def on_close(self) -> None:
        release(self.preview)
