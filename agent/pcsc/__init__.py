"""Smart-card readers through PC/SC: the daemon's watcher thread (``watcher``) and the
card-event → key-store sync (``sync``, ``service``), the ATR table (``atr``), and for
``imza-agent doctor`` a one-shot look at the readers (``probe``) and its card report
(``report``)."""
