"""The README's commands work verbatim: copied into a shell after `make run` on a fresh copy of the
project, as a new user would (none of the suite's environment; `make run` writes .env)."""

import contextlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import httpx
import pexpect
import pytest

from loopback.servers import ROOT, free_port, wait_for_port
from tests.polling import wait_until

pytestmark = pytest.mark.live

PASSWORD = "a long admin passphrase 42"
# The README's management commands, each on its own line of a shell block (not the aws ones,
# which need an AWS account).
COMMAND = re.compile(r"^(\.venv/bin/python manage\.py (?!aws_setup)[^#\n]*?)\s*(?:#.*)?$", re.MULTILINE)


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return [command for block in blocks for command in COMMAND.findall(block)]


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The project's files as a clone would have them (tracked and new, not ignored), sharing
    this checkout's installed .venv."""
    copy = tmp_path_factory.mktemp("fresh") / "tollgate"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def user_shell_env() -> dict[str, str]:
    """A user's shell: none of the suite's settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def test_every_readme_command_works_verbatim_after_make_run(fresh_copy):
    commands = readme_commands()
    assert any("createsuperuser" in c for c in commands) and any("create_key" in c for c in commands)
    port = free_port()
    server = subprocess.Popen(
        ["make", "run", f"PORT={port}"], cwd=fresh_copy, env=user_shell_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=180, process=server)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok", "upstreams": {"demo": "up"}}
        dotenv = fresh_copy / ".env"
        assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
        assert re.fullmatch(r"DJANGO_DEBUG=1\nDJANGO_SECRET_KEY=\S{40,}\n", dotenv.read_text())
        for command in commands:
            if "createsuperuser" in command:
                create_superuser(command, fresh_copy)
            else:
                result = subprocess.run(
                    command, shell=True, cwd=fresh_copy, env=user_shell_env(), capture_output=True, text=True,
                    timeout=120,
                )  # fmt: skip
                assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
                if "create_key" in command:
                    assert result.stdout.startswith("tg_")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def create_superuser(command: str, cwd: Path) -> None:
    """createsuperuser asks on a terminal: answer it as a person would."""
    shell = pexpect.spawn("/bin/sh", ["-c", command], cwd=str(cwd), env=user_shell_env(), timeout=60, encoding="utf-8")
    shell.expect("Username")
    shell.sendline("alice")
    shell.expect("Email")
    shell.sendline("alice@example.com")
    for _ in range(2):
        shell.expect("Password")
        shell.sendline(PASSWORD)
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0 and "Superuser created successfully" in shell.before


def readme_python(containing: str) -> str:
    [block] = [
        b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL) if containing in b
    ]
    return block


@pytest.mark.django_db(transaction=True)
def test_the_readme_tool_call_and_responses_examples_run_as_written(live, standin, alice, make_plan, make_key):
    """The README's tool round trip and Responses calls, run as they are written, against the stand-in
    model serving `fast` through Tollgate; and what the tool said is what the model heard."""
    import openai

    from proxy.models import LanguageModel

    LanguageModel.objects.create(name="fast", base_url=standin.url + "/v1")
    _key, secret = make_key(alice, make_plan(quota=100))
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=secret)
    # The server's catalog takes a new model within 5 s.
    assert wait_until(lambda: "fast" in [m.id for m in client.models.list()])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(readme_python("tools = ["), {"client": client})  # noqa: S102 - the README's own code
        exec(readme_python("client.responses.create"), {"client": client})  # noqa: S102
    lines = printed.getvalue().splitlines()
    assert lines[0] == "The tool said: 18°C, sunny"
    assert lines[1] == f"{standin.text} 7 5"
    assert lines[2] == standin.text
    [first, second] = [body for body in standin.bodies if "tools" in body]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_standin", "content": "18°C, sunny"}
    assert second["messages"][-2]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
