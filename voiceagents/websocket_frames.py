"""What the two WebSocket sides' fast paths share: the header of one final, unfragmented
text frame (RFC 6455 section 5.2), built directly, and the name of the ASGI scope
extension that offers the Twilio side's shortcut to the application."""

import struct

# voiceagents/daphne_server.py puts Daphne's WebSocket protocol in the scope under this
# name (see LeanWebSocketProtocol.receive_text_with and send_text); calls/consumers.py
# uses it when it is there. Importing this module imports neither Daphne nor Twisted.
SHORTCUT_EXTENSION = "voiceagents.websocket"

FIN_TEXT = 0x81  # FIN bit and the text opcode
MASKED = 0x80  # second byte: a masking key follows the length (client frames)
# Lengths up to 125 sit in the second byte; 126 and 127 say a 16- or 64-bit length follows.
LENGTH_16 = struct.Struct("!BBH")
LENGTH_64 = struct.Struct("!BBQ")


def text_frame_header(length: int, masked: bool) -> bytes:
    mask_bit = MASKED if masked else 0
    if length < 126:
        return bytes((FIN_TEXT, mask_bit | length))
    if length < 65536:
        return LENGTH_16.pack(FIN_TEXT, mask_bit | 126, length)
    return LENGTH_64.pack(FIN_TEXT, mask_bit | 127, length)
