"""A patient's e-mail preferences: the address (used only once confirmed by a link sent to
it), the events they want to hear about, and the one-click opt-out. Every read and change
is decided and recorded by the access service; the two links, which carry no token, are
recorded as the patient's acts through them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.records import AuditRecord, Outcome
from vault.access.service import AccessService
from vault.db import Session
from vault.errors import InvalidResource, NotFound, TooManyRequests
from vault.models import NotificationContact
from vault.models.base import as_utc, utcnow
from vault.notifications import repository, templates
from vault.notifications.contacts import (
    ContactKeys,
    events_column,
    events_of,
    new_token,
    token_hash,
)
from vault.notifications.outbox import enqueue_one

CONFIRMATIONS_PER_DAY = 5


@dataclass(frozen=True)
class Preferences:
    address: str | None
    confirmed: bool
    events: tuple[str, ...]


class LinkRefused(NotFound):
    """A confirmation or opt-out link that is unknown, used, expired or forged: all alike."""


class NotificationPreferences:
    def __init__(
        self, access: AccessService, contacts: ContactKeys, *, confirmation_hours: int
    ) -> None:
        self.access = access
        self.contacts = contacts
        self._confirmation = timedelta(hours=confirmation_hours)

    def _authorize(
        self, session: Session, actor: Actor, permission: Permission, patient_id: str, change: str
    ) -> None:
        self.access.authorize(
            session,
            actor,
            permission,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            detail={"notifications": change},
            not_found_as="Patient",
        )

    def view(self, session: Session, actor: Actor, patient_id: str) -> Preferences:
        self._authorize(session, actor, Permission.NOTIFICATIONS_READ, patient_id, "read")
        return self._preferences(session, session.get(NotificationContact, patient_id))

    def _preferences(self, session: Session, contact: NotificationContact | None) -> Preferences:
        if contact is None:
            return Preferences(None, confirmed=False, events=templates.DEFAULT_EVENTS)
        wanted = events_of(contact.events)
        return Preferences(
            self.contacts.address(session, contact),
            confirmed=contact.confirmed_at is not None,
            events=tuple(kind for kind in templates.EVENT_KINDS if kind in wanted),
        )

    def set_address(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        address: str,
        now: datetime | None = None,
    ) -> Preferences:
        """Store the address unconfirmed and send it a link: nothing else goes to it until
        the link is followed."""
        normalised = _checked_address(address)
        self._authorize(session, actor, Permission.NOTIFICATIONS_MANAGE, patient_id, "address")
        moment = now or utcnow()
        self._limit_confirmations(session, patient_id, moment)
        contact = session.get(NotificationContact, patient_id)
        if contact is None:
            contact = NotificationContact(
                patient_id=patient_id,
                version=1,
                events=events_column(templates.DEFAULT_EVENTS),
                created_at=moment,
            )
            session.add(contact)
        else:
            contact.version += 1
        sealed = self.contacts.seal_address(session, patient_id, contact.version, normalised)
        token = new_token()
        contact.address_ciphertext = sealed.ciphertext
        contact.address_dek = sealed.wrapped_dek
        contact.kek_id = sealed.kek_id
        contact.confirmed_at = None
        contact.confirm_token_hash = token_hash(token)
        contact.confirm_expires_at = moment + self._confirmation
        contact.updated_at = moment
        session.flush()
        self._enqueue_confirmation(session, patient_id, contact.version, token)
        return self._preferences(session, contact)

    @staticmethod
    def _limit_confirmations(session: Session, patient_id: str, now: datetime) -> None:
        """A confirmation goes to an address nobody has vouched for yet: a few a day per
        record, so that no one uses the vault to mail strangers."""
        sent = repository.emails_of_kind_since(
            session, patient_id, templates.CONFIRMATION, now - timedelta(days=1)
        )
        if sent >= CONFIRMATIONS_PER_DAY:
            raise TooManyRequests(
                f"At most {CONFIRMATIONS_PER_DAY} addresses to confirm per day", retry_after=3600
            )

    def _enqueue_confirmation(
        self, session: Session, patient_id: str, version: int, token: str
    ) -> None:
        row = enqueue_one(session, patient_id, templates.CONFIRMATION, contact_version=version)
        sealed = self.contacts.seal_secret(session, patient_id, row.id, token)
        row.secret_ciphertext = sealed.ciphertext
        row.secret_dek = sealed.wrapped_dek
        row.kek_id = sealed.kek_id
        session.flush()

    def remove_address(self, session: Session, actor: Actor, patient_id: str) -> None:
        self._authorize(session, actor, Permission.NOTIFICATIONS_MANAGE, patient_id, "remove")
        contact = session.get(NotificationContact, patient_id)
        if contact is None:
            return
        # Destroying the sealed address is enough: queued e-mails find none and are skipped.
        contact.version += 1
        contact.address_ciphertext = None
        contact.address_dek = None
        contact.kek_id = None
        contact.confirmed_at = None
        contact.confirm_token_hash = None
        contact.confirm_expires_at = None
        contact.updated_at = utcnow()
        session.flush()

    def set_events(
        self, session: Session, actor: Actor, patient_id: str, events: list[str]
    ) -> Preferences:
        unknown = sorted(set(events) - set(templates.EVENT_KINDS))
        if unknown:
            raise InvalidResource(
                f"Unknown event kind(s): {', '.join(unknown)[:200]}; known: "
                + ", ".join(templates.EVENT_KINDS),
                expression="events",
            )
        self._authorize(session, actor, Permission.NOTIFICATIONS_MANAGE, patient_id, "events")
        contact = session.get(NotificationContact, patient_id)
        now = utcnow()
        if contact is None:
            contact = NotificationContact(patient_id=patient_id, version=1, created_at=now)
            session.add(contact)
        contact.events = events_column(tuple(events))
        contact.updated_at = now
        session.flush()
        return self._preferences(session, contact)

    def confirm(self, session: Session, token: str, now: datetime | None = None) -> str:
        """Following the link: the address is confirmed; returns the record's id."""
        moment = now or utcnow()
        contact = repository.contact_by_confirm_token(session, token_hash(token))
        if (
            contact is None
            or contact.confirm_expires_at is None
            or as_utc(contact.confirm_expires_at) <= moment
            or contact.address_ciphertext is None
        ):
            raise LinkRefused("This link is unknown or has expired")
        contact.confirmed_at = moment
        contact.confirm_token_hash = None
        contact.confirm_expires_at = None
        contact.updated_at = moment
        session.flush()
        self._record_link(session, contact.patient_id, "confirmed")
        return contact.patient_id

    def unsubscribe(self, session: Session, patient_id: str, token: str) -> None:
        """The one-click opt-out: no more e-mail about any event, the address kept (the
        patient may choose events again from their space)."""
        contact = session.get(NotificationContact, patient_id)
        if contact is None or not self.contacts.unsubscribe_valid(
            patient_id, contact.version, token
        ):
            raise LinkRefused("This link is unknown or has expired")
        contact.events = events_column(())
        contact.updated_at = utcnow()
        session.flush()
        self._record_link(session, patient_id, "unsubscribed")

    def _record_link(self, session: Session, patient_id: str, change: str) -> None:
        # The link itself is the proof that the address's owner acted: no token, no
        # principal, but the act goes in the log like any other change to the record.
        self.access.record(
            session,
            AuditRecord(
                action="U",
                outcome=Outcome.SUCCESS,
                purpose="PATRQT",
                principal=None,
                patient_id=patient_id,
                resource_type="Patient",
                resource_id=patient_id,
                detail={
                    "permission": Permission.NOTIFICATIONS_MANAGE.value,
                    "notifications": change,
                    "via": "e-mail link",
                },
            ),
        )


def _checked_address(address: str) -> str:
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidResource("Not a valid e-mail address", expression="address") from None
    return str(checked.normalized)
