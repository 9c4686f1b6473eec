"""Bidirectional Forwarding Detection (RFC 5880 asynchronous mode, RFC 5881 single hop).

`packet` is the control packet codec, `session` the sans-IO state machine, `udp` the asyncio
adapter that moves datagrams and arms the deadlines a session asks for.
"""
