"""What the e-mails say, in French, keyed by event.

Every text here is fixed: an e-mail never names a document, a professional, a diagnosis or
an identifier, since a mailbox is neither private nor encrypted. The patient reads the
details in their space. The only variable parts are links (the space, the confirmation,
the opt-out), so the whole table can move into the web's Babel catalog as it is: each
``(kind, part)`` becomes one message id.
"""

from __future__ import annotations

from dataclasses import dataclass

# The events a patient may choose to hear about by e-mail, in the order the API lists them.
EVENT_KINDS: tuple[str, ...] = (
    "new-document",
    "new-reader",
    "emergency-access",
    "delegation-used",
    "delegation-granted",
    "export-ready",
    "space-closed",
)
# What a patient who gives an address hears about until they choose otherwise.
DEFAULT_EVENTS: tuple[str, ...] = EVENT_KINDS
CONFIRMATION = "address-confirmation"


@dataclass(frozen=True)
class Template:
    subject: str
    body: str


_SIGNATURE = (
    "\n\nPour en savoir plus, connectez-vous à votre espace : {space_url}\n"
    "\n"
    "Ce message ne contient aucune donnée de santé. Ne répondez pas à cet e-mail.\n"
    "Pour ne plus recevoir ces e-mails : {unsubscribe_url}\n"
)

TEMPLATES: dict[str, Template] = {
    "new-document": Template(
        "Un nouveau document est disponible dans votre espace",
        "Bonjour,\n\nUn nouveau document est disponible dans votre espace santé.",
    ),
    "new-reader": Template(
        "Quelqu'un a consulté votre dossier",
        "Bonjour,\n\nUn professionnel de santé a consulté votre dossier pour la première "
        "fois. L'historique des accès de votre espace vous dit qui et quand.",
    ),
    "emergency-access": Template(
        "Accès en urgence à votre dossier",
        "Bonjour,\n\nVotre dossier a été consulté dans le cadre d'un accès en urgence. "
        "L'historique des accès de votre espace vous dit qui, quand et pourquoi.",
    ),
    "delegation-used": Template(
        "Un proche a utilisé l'accès que vous lui avez donné",
        "Bonjour,\n\nUne personne à qui vous avez donné accès à votre dossier l'a utilisé "
        "aujourd'hui.",
    ),
    "delegation-granted": Template(
        "Un accès à votre dossier a été accordé",
        "Bonjour,\n\nUn nouvel accès à votre dossier a été accordé à un proche. Si vous ne "
        "l'avez pas demandé, retirez-le depuis votre espace.",
    ),
    "export-ready": Template(
        "Votre export est prêt",
        "Bonjour,\n\nL'export de votre dossier que vous avez demandé est prêt. Il est "
        "téléchargeable depuis votre espace pendant une durée limitée.",
    ),
    "space-closed": Template(
        "Votre espace a été fermé",
        "Bonjour,\n\nVotre espace santé a été fermé. Vos documents sont conservés, chiffrés, "
        "pendant la durée prévue par la loi ; vous pouvez demander sa réouverture.",
    ),
}

CONFIRMATION_TEMPLATE = Template(
    "Confirmez votre adresse e-mail",
    "Bonjour,\n\nVous avez demandé à recevoir par e-mail les nouvelles de votre espace "
    "santé. Pour confirmer cette adresse, ouvrez ce lien (valable {hours} heures) :\n"
    "{confirm_url}\n\nSi vous n'êtes pas à l'origine de cette demande, ignorez ce message : "
    "rien ne vous sera envoyé.\n",
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


def render(kind: str, *, space_url: str, unsubscribe_url: str) -> Rendered:
    template = TEMPLATES[kind]
    signature = _SIGNATURE.format(space_url=space_url, unsubscribe_url=unsubscribe_url)
    return Rendered(template.subject, template.body + signature)


def render_confirmation(*, confirm_url: str, hours: int) -> Rendered:
    template = CONFIRMATION_TEMPLATE
    return Rendered(template.subject, template.body.format(confirm_url=confirm_url, hours=hours))
