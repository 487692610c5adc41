"""What both HTTP surfaces share: what a route requires (``requires``, ``public``), the
services as a request dependency, and the commit that ends a request's transaction (a failed
one is ended by ``AccessService.end_failed``, which records what must outlive it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from vault.access.permissions import Permission
from vault.db import Session
from vault.services import Services


async def services(request: Request) -> Services:
    # Async because it does no I/O: a sync dependency costs a trip to the thread pool.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services)]


def commit(session: Session) -> None:
    try:
        session.commit()
    finally:
        session.close()


@dataclass(frozen=True)
class Requires:
    """What a route needs, declared beside its path (``dependencies=[requires(...)]``) so that
    the route table reads as an access table; the OpenAPI description of the operation says
    it too (vault/api/openapi.py). The permissions are those its service asks the decision
    for (vault/access/policy.py), which is taken there, on the record the request names;
    a route that asks for none says why (``reason``). tests/api/test_routes_require_auth.py
    fails for a route that declares nothing."""

    permissions: tuple[Permission, ...] = ()
    reason: str | None = None
    public: bool = False

    async def __call__(self) -> None:
        # A declaration: the decision needs the record, which the service loads.
        return None

    def describe(self) -> str:
        if self.permissions:
            needed = ", ".join(f"`{permission.value}`" for permission in self.permissions)
            text = f"**Requires** {needed}, decided on the record the request names."
        else:
            text = "**Requires** a valid access token only." if not self.public else ""
        if self.public:
            text = f"**Public**: {self.reason}. {text}".strip()
        elif self.reason:
            text = f"{text} {self.reason[0].upper()}{self.reason[1:]}."
        return text


def requires(*permissions: Permission, reason: str | None = None) -> Any:
    """A route's declaration: the permissions the decision is asked for; with none, the
    reason none is needed (the route reaches no patient's record)."""
    if not permissions and not reason:
        raise ValueError("A route that asks for no permission says why")
    return Depends(Requires(permissions, reason))


def public(reason: str, *permissions: Permission) -> Any:
    """A route on the public list (vault/api/app.py's PUBLIC_PATHS): no token, and why."""
    return Depends(Requires(permissions, reason, public=True))


def declared(dependencies: list[Any]) -> Requires | None:
    """The declaration among a route's dependencies (``route.dependencies``), if any."""
    for dependency in dependencies:
        if isinstance(dependency.dependency, Requires):
            found: Requires = dependency.dependency
            return found
    return None
