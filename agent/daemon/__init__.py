"""The daemon (`imza-agent run`) and what starts it.

* ``run``: the event loop, logging and signals around the runtime;
* ``runtime``: builds the running agent from its parts and starts the transports;
* ``token_watch``: the one look at the tokens that pages and the tray both follow;
* ``launcher``: starts the daemon on demand (native messaging host, `imza-agent demo`).

Nothing is imported here, so the launcher stays cheap for the processes that only start
the daemon.
"""
