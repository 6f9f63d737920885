"""matrix-hotline's shared tooling: the embedded homeserver, the demo and the `hotline` command."""
