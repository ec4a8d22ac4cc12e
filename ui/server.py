"""``systemprompt infra ui``: check the configuration and the servers, then serve."""

from __future__ import annotations

import click

from control.context import Context

from .settings import load_settings


def serve(ctx: Context, host: str, port: int) -> None:
    """Refuses to start (ConfigError: exit 2) without credentials or reachable servers."""
    import uvicorn

    from .app import create_app

    settings = load_settings(ctx.profile)
    if ctx.profile.database_url:

        async def reachable(_store: object) -> None:
            return None

        ctx.with_history("infra ui", reachable)  # names the URL (masked) when it is not
    app = create_app(ctx, settings)
    users = ", ".join(a.name + ("" if a.can_act else " (read-only)") for a in settings.accounts)
    click.echo(f"dashboard on http://{host}:{port}/ (users: {users})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
