"""``imza-agent doctor``: what the agent sees on this machine, for users and support.

Reports PC/SC readers and cards, PKCS#11 modules (loaded or why not), tokens with their
PIN state, every certificate with the private key it pairs with (and how), PKCS#12 files
and the demo identity.  Plain text by default; ``--json`` gives stable keys for support
tickets.

It never asks for a PIN, never logs in and prints no secret: everything shown is what a
token tells anyone before login.  Like the agent itself it creates the demo identity in
the data dir when the configuration asks for one (see ``keystores/manager.py``).

``collect`` gathers the report (each store describes itself, ``KeyStore.diagnostics``),
``certificates`` describes one certificate, ``text`` renders the report for a person and
``command`` is the command line.
"""

from agent.doctor.collect import collect, has_failures
from agent.doctor.command import main
from agent.doctor.text import render_text

__all__ = ["collect", "has_failures", "main", "render_text"]
