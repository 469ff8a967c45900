"""`modelmgr`: the operators' command line, with progress bars.

It talks gRPC straight to the services (not the gateway's HTTP API): an operator is on the services'
network anyway, the streams (download, load, generate) arrive as typed messages with no SSE parsing,
and it keeps working when the gateway is down or not deployed. Calls go through service_kit.peer, so
a failure prints as the gRPC error it is (code / reason: message).

Modules: `cli` (arguments and commands), `services` (the three peers), `progress` (the rich bars),
`output` (tables and error lines).
"""
