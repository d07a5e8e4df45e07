"""Start the application services on the running local stack, then play the demo.

First run: makes demo API tokens for the bureau, two towns, civil affairs and finance
(only their SHA-256 hashes go into `.local/tokens.toml`; the tokens themselves are
printed and kept in `.local/demo-tokens.toml`, readable by the owner only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.local import demo, services, stack

# who the demo acts as: name -> (role, organisation, town code or None)
DEMO_PRINCIPALS: dict[str, tuple[str, str, str | None]] = {
    "bureau": ("emergency_bureau", "桓台县应急管理局", None),
    "qifeng": ("town", "起凤镇人民政府", "370321101"),
    "tianzhuang": ("town", "田庄镇人民政府", "370321102"),
    "civil_affairs": ("civil_affairs", "桓台县民政局", None),
    "finance": ("finance", "桓台县财政局", None),
}


def demo_tokens() -> dict[str, str]:
    """The demo's tokens by name, made once per state folder."""
    state = stack.state_dir()
    clear = state / "demo-tokens.toml"
    if clear.exists():
        with clear.open("rb") as fh:
            return {k: str(v) for k, v in tomllib.load(fh).items()}
    tokens = {name: secrets.token_urlsafe(32) for name in DEMO_PRINCIPALS}
    lines = []
    for name, (role, org, town) in DEMO_PRINCIPALS.items():
        lines += [
            "[[tokens]]",
            f'sha256 = "{hashlib.sha256(tokens[name].encode()).hexdigest()}"',
            f'role = "{role}"',
            f'org = "{org}"',
            *([f'town = "{town}"'] if town else []),
            "",
        ]
    (state / "tokens.toml").write_text("\n".join(lines), encoding="utf-8")
    clear.touch(mode=0o600)
    clear.write_text("".join(f'{k} = "{v}"\n' for k, v in tokens.items()), encoding="utf-8")
    return tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="up", description="start the services, play the demo")
    parser.add_argument("--no-demo", action="store_true", help="start the services only")
    parser.add_argument(
        "--workers", type=int, default=None, help="processor workers (default: as last time, 1)"
    )
    parser.add_argument(
        "--intakes",
        type=int,
        default=None,
        help="intake instances on one address (default: as last time, 1)",
    )
    parser.add_argument(
        "--ledgers",
        type=int,
        default=None,
        help="ledger consumers, each its share of the partitions (default: as last time, 1)",
    )
    parser.add_argument(
        "--casebooks",
        type=int,
        default=None,
        help="casebook consumers, each its share of the partitions (default: as last time, 1)",
    )
    # (`./run up` hands its arguments to stack.py too: --brokers is its own)
    args, _ = parser.parse_known_args(argv)
    for name in ("workers", "intakes", "ledgers", "casebooks"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 12:
            parser.error(f"--{name} must be between 1 and 12")
    info = stack.local_info()
    tokens = demo_tokens()
    finance_hash = hashlib.sha256(tokens["finance"].encode()).hexdigest()
    os.environ["RELIEF_DASHBOARD_TOKEN_HASHES"] = f"finance:{finance_hash}"
    try:
        services.start_all(
            info,
            workers=args.workers,
            intakes=args.intakes,
            ledgers=args.ledgers,
            casebooks=args.casebooks,
        )
        if not args.no_demo:
            demo.play(f"http://127.0.0.1:{services.INTAKE_PORT}", tokens)
    except stack.StackError as exc:
        print(f"up: {exc}", file=sys.stderr)
        return 2
    code = stack.status()
    print()
    # a sign-in page, never a token in an address (terminal scrollback, shell history,
    # the browser's history): the finance token is in the demo tokens' file
    print(
        f"finance dashboard: http://127.0.0.1:{services.DASHBOARD_PORT}/signin "
        "(sign in with the finance demo token)"
    )
    print(f"console:           http://127.0.0.1:{services.CONSOLE_PORT}/ (demo tokens below)")
    print(f"intake API:        http://127.0.0.1:{services.INTAKE_PORT}/docs")
    print(f"demo tokens:       {stack.state_dir() / 'demo-tokens.toml'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
