"""The wire protocol, free of I/O: message models, JSON-RPC framing, dispatch, schema.

Transports (WebSocket, native messaging) hand text frames to ``Dispatcher.handle_frame``
and send back whatever text it returns; nothing in this package opens a socket, starts a
thread or draws a window.
"""
