"""Process entry point: CLI parsing, transport TLS material, uvicorn startup, ready line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import pki
from .config import Config
from .persistence import atomic_write
from .profiles import PROFILES, ROLE_CHOICES, parse_extra_user, role_name


class SimulatorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the connection's transport to the app (scope["state"]).

    The ``drop_next`` fault needs it to close the TCP connection without any HTTP response.
    """

    def connection_made(self, transport):  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = dict(self.app_state)
        self.app_state["_transport"] = transport

    def shutdown(self) -> None:
        # An idle keep-alive connection is aborted at once: a TLS close would wait for the peer's
        # close_notify, which an idle client never sends, delaying every restart.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
            return
        super().shutdown()


def ensure_transport_pki(state_dir: Path) -> tuple[Path, Path, Path]:
    """Create (first start) or reuse the HTTPS CA and 127.0.0.1/localhost server certificate."""
    ca = state_dir / "ca.pem"
    ca_key = state_dir / "ca-key.pem"
    cert = state_dir / "server-cert.pem"
    key = state_dir / "server-key.pem"
    if not (ca.exists() and cert.exists() and key.exists()):
        ca_pem, ca_key_pem, cert_pem, key_pem = pki.make_transport_pki(pki.utc(time.time()))
        atomic_write(ca_key, ca_key_pem.encode(), mode=0o600)
        atomic_write(key, key_pem.encode(), mode=0o600)
        atomic_write(cert, cert_pem.encode(), mode=0o644)
        atomic_write(ca, ca_pem.encode(), mode=0o644)
    return ca, cert, key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m opsman_simulator", description="Ops Manager API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--apply-seconds", type=float, default=5.0)
    p.add_argument("--token-ttl", type=float, default=3600.0)
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="admin-password")
    p.add_argument("--client-id", default=None)
    p.add_argument("--client-secret", default=None)
    p.add_argument("--ca-date-format", choices=["date", "rfc3339"], default="date")
    p.add_argument("--initial-ca-age-days", type=float, default=1200)
    p.add_argument(
        "--answer-style", choices=["legacy", "2.10"], default=None, help="default: the profile's, else legacy"
    )
    p.add_argument(
        "--safety-checks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: the profile's, else off",
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="answer as this family of Ops Manager versions (README: Profiles)",
    )
    p.add_argument(
        "--info-version", default=None, help="the version GET /api/v0/info reports (default: the profile's)"
    )
    p.add_argument(
        "--role", default="admin", help=f"role of --username and --client-id: {', '.join(ROLE_CHOICES)}"
    )
    p.add_argument(
        "--extra-user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD:ROLE",
        help="another password-grant user with its own role (repeatable)",
    )
    p.add_argument("--in-memory", action="store_true", help="keep state and journal in memory only (tests)")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        p.error("--host must be 127.0.0.1 (loopback only)")
    if (args.client_id is None) != (args.client_secret is None):
        p.error("--client-id and --client-secret go together")
    try:
        args.role = role_name(args.role)
        args.extra_user = tuple(parse_extra_user(u) for u in args.extra_user)
    except ValueError as err:
        p.error(str(err))
    profile = PROFILES.get(args.profile)
    if args.answer_style is None:
        args.answer_style = profile.answer_style if profile else "legacy"
    if args.safety_checks is None:
        args.safety_checks = profile.safety_checks if profile else False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    config = Config(
        state_dir=state_dir,
        apply_seconds=args.apply_seconds,
        token_ttl=args.token_ttl,
        username=args.username,
        password=args.password,
        client_id=args.client_id,
        client_secret=args.client_secret,
        ca_date_format=args.ca_date_format,
        initial_ca_age_days=args.initial_ca_age_days,
        answer_style=args.answer_style,
        safety_checks=args.safety_checks,
        profile=args.profile,
        role=args.role,
        extra_users=args.extra_user,
        info_version=args.info_version,
        persist=not args.in_memory,
    )
    ca_path, cert_path, key_path = ensure_transport_pki(state_dir)

    from .app import create_app
    from .context import Simulator

    sim = Simulator(config)
    asgi = create_app(sim)

    # IPPROTO_TCP, not the default 0: asyncio turns TCP_NODELAY on only for sockets that say TCP,
    # and without it every response waits ~40 ms (Nagle against the client's delayed ACK) between
    # the header and body TLS records. Real Ops Manager's nginx answers with tcp_nodelay on.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]

    uv_config = uvicorn.Config(
        asgi,
        http=SimulatorH11Protocol,
        lifespan="off",
        ssl_certfile=str(cert_path),
        ssl_keyfile=str(key_path),
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(uv_config)

    async def run() -> None:
        serve = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serve.done():
                await serve
                return
            await asyncio.sleep(0.01)
        ticker = asyncio.create_task(sim.ticker())
        sys.stdout.write(f"opsman-simulator ready https://127.0.0.1:{port} ca={ca_path} pid={os.getpid()}\n")
        sys.stdout.flush()
        try:
            await serve
        finally:
            ticker.cancel()

    logging.getLogger("uvicorn.error").setLevel(args.log_level.upper())
    asyncio.run(run())
    return 0
