"""The gRPC API (sart.v1, grpclib): the speaker's service, and a client that hides the stubs.
Generated code lives in `_gen` (scripts/gen-proto) and is never edited."""
