"""compress CLI (installed as compress_cli)."""
