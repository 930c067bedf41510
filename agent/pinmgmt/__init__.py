"""PIN management as the person starts it, from the tray or the CLI: pick a token, change
its PIN, or unblock it with the PUK / SO PIN.

No protocol method and no transport imports this package (tests/test_layers.py): a page
can neither start these nor learn that they happened.
"""
