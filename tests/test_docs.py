"""The documentation: the site builds strictly (no broken link, no page left out of the nav, the command
reference generated from the CLI), the README stays a README, and neither speaks of how the project is run."""
import os
import re
import subprocess
import sys
from pathlib import Path

from compress_cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_the_cli_reference_from_the_cli(tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "docs" / "mkdocs.yml"),
                          "-d", str(site)], capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    reference = (site / "reference" / "index.html").read_text()
    commands = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert len(commands) >= 9 and all(f"compress {c}" in reference for c in commands)
    assert "--drop-path-rate" in reference and "--keep-flops" in reference
    home = (site / "index.html").read_text()
    assert "Set-up (two commands" in home and 'href="choosing/"' in home   # the README, links made site-relative


def test_every_page_is_linked_from_the_nav_and_the_readme_links_exist():
    pages = {p.name for p in (ROOT / "docs" / "pages").glob("*.md")}
    nav = (ROOT / "docs" / "mkdocs.yml").read_text()
    assert pages == set(re.findall(r":\s+([\w-]+\.md)", nav))
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(docs/pages/([\w-]+\.md)", readme))
    assert linked and linked <= pages


def test_the_readme_is_short_and_speaks_only_of_the_product():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 320
    for path in [ROOT / "README.md", *sorted((ROOT / "docs" / "pages").glob("*.md"))]:
        text = path.read_text()
        found = re.findall(r"(?<!Lite )\bissues? \d+|this round|closing note", text, flags=re.I)
        assert not found, (path.name, found)
