"""The e-mail preferences API's bodies (JSON, camelCase)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from vault.notifications import templates
from vault.notifications.service import Preferences


class Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class AddressRequest(Body):
    address: str = Field(
        min_length=3,
        max_length=320,
        description="Where to send e-mails; used only once confirmed by the link sent to it",
    )


class EventsRequest(Body):
    events: list[str] = Field(
        max_length=len(templates.EVENT_KINDS),
        description="The events to be told about by e-mail; [] for none. Known: "
        + ", ".join(templates.EVENT_KINDS),
    )


class PreferencesOut(Body):
    address: str | None = Field(description="The address, confirmed or waiting for it")
    confirmed: bool
    events: list[str]
    available_events: list[str]

    @classmethod
    def of(cls, preferences: Preferences) -> PreferencesOut:
        return cls(
            address=preferences.address,
            confirmed=preferences.confirmed,
            events=list(preferences.events),
            available_events=list(templates.EVENT_KINDS),
        )
