"""MkDocs hooks: the home page is the README (its links into docs/pages/ made site-relative), and the
command reference is generated from the CLI itself by typer's own docs generator, so neither can drift."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- the CLI reference is inserted here -->"


def cli_reference() -> str:
    """``typer compress_cli.app utils docs``: every command, argument and option with its help and default."""
    out = subprocess.run([sys.executable, "-m", "typer", "compress_cli.app", "utils", "docs", "--name", "compress"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return "\n".join("#" + line if line.startswith("#") else line for line in out.splitlines())


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "index.md":
        return (ROOT / "README.md").read_text(encoding="utf-8").replace("](docs/pages/", "](")
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
