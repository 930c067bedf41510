"""imza-portal: what a portal's server needs beside imza-agent.

``imza_portal.login`` verifies ``auth.login`` tokens with ``cryptography`` alone;
``imza_portal.documents`` (extra ``documents``: pyHanko) prepares a PDF or CMS signature on
the server, has the agent sign only its hash, and finishes it.
"""

__version__ = "0.1.0"
