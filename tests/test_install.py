"""The package as pip installs it (not editable): every module imports from the install, its data
files are there, `hotline init` runs, and the bot and the gateway started from it take a chat.

`make demo` and the rest of the tests use an editable install, which would hide a package or a data
file that `pyproject.toml` leaves out (issue 13: `webchat.i18n` was missing from the wheel).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hotline.devstack import DevStack
from tests.installed import source_modules
from testkit.clients import Advocate, Survivor, until


def run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -I: neither the working directory nor PYTHONPATH on sys.path; only what the venv has.
    return subprocess.run([str(venv / "bin/python"), "-I", *argv], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_every_module_and_data_file_comes_from_the_install(installed_venv, tmp_path):
    modules = source_modules()
    assert {"webchat.i18n", "bot.service", "hotline.cli", "hotline.synapse_module"} <= set(modules)
    script = f"""
import importlib, json
from importlib import resources
import importlib.util
# A __main__ module runs when imported: its presence is enough (the commands run below and in the stack).
found = {{name: (importlib.util.find_spec(name).origin if name.endswith("__main__")
                else importlib.import_module(name).__file__) for name in {modules!r}}}
webchat = resources.files("webchat")
data = {{name: webchat.joinpath(name).is_file() for name in
        ("static/index.html", "static/chat.js", "static/chat.css", "i18n/en.json", "questions.json")}}
from webchat.i18n import load_catalogs, load_questions
catalogs = load_catalogs()
data["catalogs and questions load"] = bool(catalogs) and bool(load_questions(None, catalogs))
print(json.dumps({{"modules": found, "data": data}}))
"""
    result = run(installed_venv, "-c", script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    site = str(installed_venv / "lib")
    outside = {name: path for name, path in report["modules"].items() if not path.startswith(site)}
    assert not outside, f"imported from outside the install: {outside}"
    assert all(report["data"].values()), report["data"]
    assert not list((installed_venv / "lib").glob("python*/site-packages/__editable__*")), "an editable install"
    assert not list((installed_venv / "lib").glob("python*/site-packages/tests")), "tests/ must not be installed"
    assert not list((installed_venv / "lib").glob("python*/site-packages/testkit")), "testkit/ must not be installed"


def test_hotline_init_and_the_commands_run_from_the_install(installed_venv, tmp_path):
    init = subprocess.run([str(installed_venv / "bin/hotline"), "init", "chat.example.org", "--dir",
                           str(tmp_path / "etc"), "--target", "systemd", "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert init.returncode == 0, init.stderr[-3000:]
    assert (tmp_path / "etc/NEXT-STEPS.md").is_file()
    unit = (tmp_path / "etc/systemd/hotline-bot.service").read_text()
    assert f"ExecStart={installed_venv}/bin/hotline-bot " in unit
    for command in ("hotline-bot", "hotline-webchat", "hotline"):
        shown = subprocess.run([str(installed_venv / "bin" / command), "--help"], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (command, shown.stderr[-2000:])


async def test_bot_and_gateway_from_the_install_alert_the_dispatch_room(installed_venv, tmp_path):
    stack = DevStack(tmp_path / "stack", python=str(installed_venv / "bin/python"),
                     settings={"codeword_pepper": "install-test-pepper-" + "y" * 32}, database="sqlite")
    survivor = Survivor(stack.page_url)
    advocate = None
    try:
        await stack.start()
        for process in stack.processes.values():
            assert process.args[0] == str(installed_venv / "bin/python")
        advocate = Advocate(stack.homeserver.url, stack.accounts.advocates[0].user_id,
                            stack.accounts.advocates[0].password)
        await advocate.login()
        await survivor.start()
        await survivor.say("first words from the installed gateway")
        dispatch = stack.accounts.dispatch_room
        alert = await until(lambda: [b for b in advocate.bodies(dispatch) if b.startswith("Chat waiting")], 60,
                            "the dispatch alert from the installed bot")
        assert alert
    finally:
        await survivor.close()
        if advocate is not None:
            await advocate.close()
        stack.stop()
