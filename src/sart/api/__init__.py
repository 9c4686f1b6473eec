"""The gRPC API (grpclib): the speaker's own service (sart.speaker.v1.SpeakerApi), the original
sart's contract beside it (sart.v1.BgpApi, for migrations), and a client that hides the stubs.
Generated code lives in `_gen` (scripts/gen-proto) and is never edited."""
