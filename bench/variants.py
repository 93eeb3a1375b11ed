"""Variants of the app measured side by side in one run: another commit (checked out in a
git worktree under var/bench/trees/) and/or other settings, so that before and after
meet the same machine at the same time.

    --variant before@4f71839 --variant after
    --variant off:INBOUND_AUDIO_WINDOW_MS=20 --variant 60ms:INBOUND_AUDIO_WINDOW_MS=60

A spec is LABEL[@REV][:KEY=VALUE[,KEY=VALUE…]]; without @REV the working tree runs.
"""

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.live import ROOT

TREES = ROOT / "var" / "bench" / "trees"


@dataclass(frozen=True)
class Variant:
    label: str
    app_dir: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)


def parse_variant(spec: str) -> Variant:
    name, _, settings = spec.partition(":")
    label, _, rev = name.partition("@")
    env = {}
    for pair in filter(None, settings.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--variant {spec!r}: settings are KEY=VALUE, comma-separated")
        env[key] = value
    if not label:
        raise ValueError(f"--variant {spec!r} has no label")
    return Variant(label, checkout(rev) if rev else ROOT, env)


def checkout(rev: str) -> Path:
    """A worktree of `rev` (made once, reused): the app as it was at that commit, run with
    this checkout's virtualenv."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = TREES / sha[:12]
    if not (tree / "manage.py").exists():
        TREES.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--force", "--detach", str(tree), sha],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return tree
