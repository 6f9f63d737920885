"""Clients and probes shared by tests/ and bench/: a survivor on a real WebSocket, an advocate on a
real nio client, and read-only looks at the homeserver and the routing database. Not shipped."""
