"""How pages reach the agent; every transport ends in the same dispatcher.

* ``admission``: who may connect (the peer's OS user, Host and path for a WebSocket, origin
  policy, connections per origin, per site and in all) — one decision and one refusal log
  line for all transports;
* ``websocket``: ws/wss on loopback; ``local``: the Unix socket the native host uses;
* ``session``: what every transport does with an admitted connection's frames;
* ``uploads``: documents sent as binary WebSocket frames (``document.upload``) and the
  binary answers to the requests that name them;
* ``native_host`` and ``native_relay``: `imza-agent native-host`, the browser extension's
  native messaging host, relaying each page connection to the daemon's local socket.
"""
