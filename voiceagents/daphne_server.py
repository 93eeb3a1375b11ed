"""Daphne's server, offering each WebSocket's protocol to the application as the ASGI scope
extension "voiceagents.websocket" (its `receive_text_with` and `send_text`: see
voiceagents/websocket_protocol.py).

Imported only once the event loop is chosen: importing daphne.server installs Twisted's
asyncio reactor. `voiceagents.web_server` makes Daphne's command line use it
(`CommandLineInterface.server_class`).
"""

from daphne.server import Server

from voiceagents.websocket_frames import SHORTCUT_EXTENSION
from voiceagents.websocket_protocol import LeanWebSocketProtocol


class ShortcutServer(Server):
    def create_application(self, protocol, scope):
        if isinstance(protocol, LeanWebSocketProtocol):
            scope["extensions"] = {**scope.get("extensions", {}), SHORTCUT_EXTENSION: protocol}
        return super().create_application(protocol, scope)
