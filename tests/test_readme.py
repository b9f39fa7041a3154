"""Every shell block of README.md runs, command after command, in a scratch directory.

The directory holds a copy of ``examples/`` (the shipped inputs the README names: reps,
last year's plan, locked units, the plan files), so the README cannot name a file that is
not shipped, a flag that does not exist, or a command that fails. A few commands are not
run here, each for a reason stated in :data:`NOT_HERE` (building a virtualenv, the
network, a national download); every other line must exit 0 and write what it names.
"""

from __future__ import annotations

import re
import shlex
import shutil

from conftest import REPO, run_cli

README = REPO / "README.md"

#: Commands the test does not run (prefix of the command line -> where it is covered).
NOT_HERE = {
    "make demo": "builds a virtualenv; CI runs `make test` (the same Makefile)",
    "make test": "builds a virtualenv; CI runs it",
    "patchmap demo": "the California chain: tests/test_demo.py runs it end to end",
    "patchmap geodata fetch zcta --source": "a national Census archive: tests/test_geofetch.py "
    "registers a one-state archive",
    "patchmap geodata fetch zcta": "downloads from the Census Bureau (network)",
    "pip install": "installs into the running environment; the test extras include highspy",
}


#: The README's plans are searched with ``--effort 0`` here (the restarts, no anytime
#: search; ``effort = 0`` in the scratch copy of examples/plan.toml): this test checks that
#: every command runs and writes what it names. How good the default search's plans are is
#: pinned by tests/test_golden.py and checked by tests/test_partition.py.
QUICK = ("--effort", "0")
#: ... and a ``--prove`` command proves for 2 s, not the README's minute: its bound is
#: valid either way (tests/test_certify.py checks bounds against exhaustive enumeration).
QUICK_PROOF = ("--prove-time-limit", "2")


def shell_commands(text: str) -> list[str]:
    """The commands of every shell block (```sh, ```bash, ```console, ```shell): continuation
    lines joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"^```(?:sh|bash|console|shell)\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def _skipped(command: str) -> str | None:
    for prefix in sorted(NOT_HERE, key=len, reverse=True):
        if command == prefix or command.startswith(prefix + " "):
            return prefix
    return None


def test_readme_commands_parse():
    commands = shell_commands(README.read_text())
    assert len(commands) >= 20
    assert all(c.split()[0] in ("patchmap", "make", "pip") for c in commands), commands
    # no other fenced block holds shell commands the runner would not see
    fences = re.findall(r"^```(\w*)\n", README.read_text(), flags=re.M)
    assert set(fences) <= {"sh", "toml", "python", ""}, fences
    # the README tells a newcomer how to call the command `make demo` installs
    assert ".venv/bin/patchmap" in README.read_text()


def test_every_readme_shell_command_runs(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    plan_toml = tmp_path / "examples" / "plan.toml"
    text = plan_toml.read_text()
    assert text.count("\nseed = 0\n") == 1
    plan_toml.write_text(text.replace("\nseed = 0\n", "\nseed = 0\neffort = 0\n"))
    ran, skipped = [], set()
    for command in shell_commands(README.read_text()):
        prefix = _skipped(command)
        if prefix is not None:
            skipped.add(prefix)
            continue
        words = shlex.split(command)
        quick = QUICK if words[1] == "partition" else ()
        quick += QUICK_PROOF if "--prove" in words else ()
        r = run_cli(*words[1:], *quick, cwd=tmp_path)
        assert r.returncode == 0, f"$ {command}\n{r.stderr[-3000:]}"
        if "--out" in words:
            out = tmp_path / words[words.index("--out") + 1]
            assert out.exists(), f"$ {command}: no {out.name}"
        ran.append(command)
    assert skipped == set(NOT_HERE), skipped  # every reason still names a README command
    assert len(ran) >= 15
    # the chain scores once: layers and export read the scored table and keep its scores
    assert not (tmp_path / "units.model.json").exists()
    assert (tmp_path / "scored.model.json").exists()
    assert (tmp_path / "out" / "plan" / "map.html").exists()  # examples/plan.toml's output
