"""Smart-card readers through PC/SC: the watcher thread, the ATR table, card reports."""
