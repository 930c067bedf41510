"""The use cases, free of I/O: consent, the picker, the one signing use case
(``signing``), the document formats on it (``documents``), and the ports they are typed
against (``ports``, ``dialogs``).  See docs/architecture.md."""
