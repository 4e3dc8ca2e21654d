"""The documentation site: it builds strictly, and every command it shows is one the CLI accepts."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]   # not --quiet: it hides the warnings --strict counts
PLACEHOLDER = re.compile(r"<[^<>]*>")   # <run>, <head>, <larger>: any value will do for composing (1 is a number, a name, a path)
INLINE = re.compile(r"`(robo-rl [a-z][^`]*)`")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([*MKDOCS, "-f", str(config), "-d", str(site)], capture_output=True, text=True, timeout=300,
                          cwd=config.parent, env=env)


def test_the_site_builds_strictly_with_every_page_and_plot(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    # every page of docs/ is in the site, the API reference holds the docstrings, the plots are served
    pages = [p.relative_to(ROOT / "docs").with_suffix("") for p in (ROOT / "docs").rglob("*.md")]
    for page in pages:
        html = tmp_path / "site" / (page.parent if page.name == "index" else page) / "index.html"
        assert html.is_file(), page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "learn" in api and "predict" in api and "SafetyLayer" in api and "run_jobs" in api
    assert (tmp_path / "site" / "benchmarks" / "results" / "l2m" / "success_over_sequence.png").is_file()
    assert 'src="../results/l2m/success_over_sequence.png"' in (tmp_path / "site" / "benchmarks" / "l2m" / "index.html").read_text()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """A copy of the project whose docs have one link to a page that does not exist."""
    for entry in ROOT.iterdir():
        if entry.name not in ("docs", "site", "mkdocs.yml", ".git", ".venv"):
            (tmp_path / entry.name).symlink_to(entry)
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")   # a copy: MkDocs resolves paths from the real file
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "guides" / "fas.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr and "guides/fas.md" in result.stderr


def shown_commands(path: Path) -> list[tuple[int, str, bool]]:
    """(line, command, refused) for every `robo-rl ...` command in a Markdown file: lines of code blocks (with
    their continuation lines and `$ ` prompts, without trailing comments) and inline code that is a whole
    command. `refused`: the code block shows the CLI's one-line refusal right after it (an example of bad input)."""
    found: list[tuple[int, str, bool]] = []
    lines = path.read_text().splitlines()
    in_code, k = False, 0
    while k < len(lines):
        line, number = lines[k], k + 1
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif in_code:
            text = line.strip().removeprefix("$ ")
            while text.endswith("\\") and k + 1 < len(lines):
                k += 1
                text = text[:-1] + " " + lines[k].strip()
            refused = k + 1 < len(lines) and lines[k + 1].startswith("robo-rl: ")
            for part in text.split("&&"):
                part = part.strip()
                if part.startswith("robo-rl "):
                    found.append((number, part, refused))
        else:
            found += [(number, m.group(1), False) for m in INLINE.finditer(line) if "[" not in m.group(1)]
        k += 1
    return found


def argv_of(command: str) -> list[str]:
    """The command's arguments as the shell passes them: a trailing comment dropped, placeholders given a value,
    and '...' (the rest of a command shown before) left out."""
    command = command.replace("bench <name>", "bench learn")   # any benchmark: one of them
    tokens = shlex.split(PLACEHOLDER.sub("1", command), comments=True)
    return [t for t in tokens[1:] if t not in ("...", "…")]


def command_failures(paths: list[Path]) -> list[str]:
    from robo_rl.cli import UsageError, check_command
    from robo_rl.config import ConfigError

    failures = []
    for path in paths:
        for number, command, refused in shown_commands(path):
            try:
                check_command(argv_of(command))
            except (ConfigError, UsageError) as exc:
                if not refused:
                    failures.append(f"{path}:{number}: {command}: {exc}")
            else:
                if refused:
                    failures.append(f"{path}:{number}: {command}: shown as refused, but the CLI accepts it")
    return failures


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_command_in_the_readme_and_the_docs_composes():
    commands = [c for path in doc_files() for c in shown_commands(path)]
    assert len(commands) > 60   # the collector finds them: train, eval, bench, demos, deploy, mbtl, ...
    assert sum(refused for _, _, refused in commands) >= 2   # the examples of bad input are refused (checked below)
    assert {argv_of(c)[0] for _, c, _ in commands} >= {"train", "eval", "bench", "demos", "deploy", "mbtl", "fas", "finetune"}
    failures = command_failures(doc_files())
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("bad, words", [
    ("robo-rl train agent=sac agent.learning_rat=1e-3", "learning_rat"),      # a misspelt key
    ("robo-rl train agent=sacc", "sacc"),                                     # an unknown group choice
    ("robo-rl bench learn --wokers 2", "--wokers"),                           # an unknown benchmark option
    ("robo-rl demos collect task=drawer-open-v3 episode=5", "episode"),        # an unknown argument
])
def test_a_misspelt_command_fails_with_its_file_and_line(tmp_path, bad, words):
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\nSome text, then\n\n```bash\nrobo-rl train agent=sac  # fine\n{bad}   # the bad one\n```\n")
    failures = command_failures([page])
    assert len(failures) == 1 and failures[0].startswith(f"{page}:7: {bad}") and words in failures[0], failures


def headline_rows(text: str) -> list[str]:
    """The rows of the headline table (the one whose header is `| what | result | page |`), links made
    relative to docs/ (the README links `docs/x.md`, the site's home page `x.md`)."""
    lines = text.splitlines()
    start = lines.index("| what | result | page |")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line.replace("](docs/", "]("))
    return rows


def test_the_site_home_page_shows_the_readme_headline_table():
    """The site's home page repeats the README's headline results: the two must not drift apart."""
    readme = headline_rows((ROOT / "README.md").read_text())
    home = headline_rows((ROOT / "docs" / "index.md").read_text())
    assert len(readme) > 10
    missing = [row for row in readme if row not in home]
    extra = [row for row in home if row not in readme]
    assert not missing and not extra, f"README rows not on docs/index.md: {missing}\ndocs/index.md rows not in the README: {extra}"
