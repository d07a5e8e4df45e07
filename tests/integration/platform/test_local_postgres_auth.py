"""The local stack's PostgreSQL asks every role for a password (scram-sha-256), kept in
the state folder for the owner only, and the URLs the stack hands out carry them; a
cluster made before that, with `trust`, keeps working and `pg-secure` moves it to
passwords (issue 13, item 9). Each cluster is a real one of its own, in a temporary
state folder on a free port: the suite's shared server is not touched."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from deploy.local import stack as local_stack
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


class Local:
    """stack.py's PostgreSQL functions run for a state folder and port of their own."""

    def __init__(self, state: Path, port: int) -> None:
        self.state, self.port = state, port
        self.env = {
            **os.environ,
            "RELIEF_STATE_DIR": str(state),
            "RELIEF_LOCAL_PG_PORT": str(port),
        }

    def run(self, code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", f"from deploy.local import stack\n{code}"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        return done.stdout

    def urls(self) -> dict[str, str]:
        out = self.run(
            "info = stack.local_info()\n"
            "print(info.admin_url); print(info.owner_url); print(info.app_url)\n"
            "print(stack.role_url(info.app_url, stack.READ_ROLE))"
        )
        lines = out.strip().splitlines()[-4:]
        return dict(zip(["admin", "owner", "app", "read"], lines, strict=True))

    def down(self) -> None:
        self.run("stack.pg_down()")


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    here = Local(tmp_path / "state", free_port())
    try:
        yield here
    finally:
        here.down()


def bare(port: int, role: str, database: str = "postgres") -> str:
    return f"postgresql://{role}@127.0.0.1:{port}/{database}"


async def answers(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


async def test_a_new_local_cluster_asks_every_role_for_its_password(local: Local) -> None:
    local.run("stack.pg_up(stack.local_info())")
    passwords = local.state / local_stack.PG_PASSWORDS_FILE
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    urls = local.urls()
    for role in local_stack.ROLES:
        # nobody on this machine gets in as a role by naming it
        with pytest.raises(
            (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
        ):
            await answers(bare(local.port, role))
        with pytest.raises(asyncpg.InvalidPasswordError):
            await answers(bare(local.port, role).replace("@", ":wrong@", 1))
    # the URLs the stack hands to the services carry the passwords, and work
    for name, url in urls.items():
        assert f":{local.port}/" in url and "@" in url and ":" in url.split("@")[0][13:], name
        assert await answers(url), name
    # and the log line the stack prints does not show them
    shown = local.run("print(stack.masked(' '.join(stack.local_info().env().values())))")
    assert all(secret not in shown for secret in passwords.read_text().split('"')[1::2])


async def test_a_cluster_made_with_trust_keeps_working_and_moves_to_passwords(
    local: Local,
) -> None:
    # a developer's .local from before: initdb --auth=trust, started as the stack did
    data = local.state / "postgres" / "data"
    local.run(
        f"data = {str(data)!r}\n"
        "import subprocess\n"
        "runas = stack.pg_folder()\n"
        "subprocess.run([*runas, str(stack.pg_bin() / 'initdb'), '-D', str(data),"
        " '-U', stack.ADMIN_ROLE, '--auth=trust'], check=True, capture_output=True, cwd='/')\n"
    )
    local.run("stack.pg_up(stack.local_info())")  # passwords are only made with a cluster
    assert not (local.state / local_stack.PG_PASSWORDS_FILE).exists()
    urls = local.urls()
    assert all(":" not in url.split("@")[0][13:] for url in urls.values())
    for name, url in urls.items():
        assert await answers(url), name  # the old cluster works as it did
    assert "trust" in (data / "pg_hba.conf").read_text()

    out = local.run("stack.pg_secure(stack.local_info())")
    assert "now asks for passwords" in out
    with pytest.raises(asyncpg.InvalidPasswordError):
        await answers(bare(local.port, local_stack.ADMIN_ROLE))
    with pytest.raises(asyncpg.InvalidPasswordError):
        await answers(bare(local.port, local_stack.APP_ROLE, local_stack.DB_NAME))
    for name, url in local.urls().items():
        assert await answers(url), name
    # a restart keeps it so
    local.down()
    local.run("stack.pg_up(stack.local_info())")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await answers(bare(local.port, local_stack.OWNER_ROLE, local_stack.DB_NAME))
    assert await answers(local.urls()["owner"])
