"""compress CLI (installed as compress_cli)."""
from compress_cli.app import run

run()
