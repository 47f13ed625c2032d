"""The seed's fake donors: names (example.org emails only), what and in which
currency they give, campaigns and UTM attribution, and their checkouts (completed
and abandoned). Never touches the ledger; never a real person's address."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta

from app.seed.payments import processing_fee
from app.seed.timeline import Timeline, weighted

EMAIL_DOMAIN = "example.org"

CURRENCIES = (("usd", 55), ("eur", 25), ("gbp", 15), ("jpy", 5))
ONCE_AMOUNTS = {
    "usd": (500, 1000, 2000, 2500, 5000, 10000, 25000),
    "jpy": (1000, 3000, 5000, 10000, 30000),
}
MONTH_AMOUNTS = {"usd": (300, 500, 1000, 1500, 2500), "jpy": (500, 1000, 2000)}
YEAR_AMOUNTS = {"usd": (5000, 10000, 12000, 25000), "jpy": (5000, 10000, 20000)}

CAMPAIGNS = (
    (None, 30),
    ("year-end-2025", 20),
    ("spring-appeal-2026", 15),
    ("investigations-fund", 15),
    ("newsletter-drive", 10),
    ("local-elections", 10),
)
UTM_SOURCES = (
    (None, 25),
    ("newsletter", 30),
    ("homepage", 15),
    ("article", 15),
    ("mastodon", 5),
    ("facebook", 5),
    ("partner-site", 5),
)
FIRST_NAMES = (
    "Ada", "Amara", "Anna", "Ben", "Carlos", "Chen", "Dmitri", "Elif", "Emma", "Fatima",
    "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lea", "Liam", "Maja", "Mateo", "Mei",
    "Nadia", "Noah", "Olga", "Omar", "Priya", "Rafael", "Sara", "Sofía", "Tom", "Yuki",
    "Zoë", "Åsa", "Анна", "Иван",
)  # fmt: skip
LAST_NAMES = (
    "Adeyemi", "Becker", "Brown", "Costa", "Dubois", "Fischer", "García", "Hansen",
    "Ivanova", "Jensen", "Kato", "Kowalski", "López", "Müller", "Nguyen", "O'Brien",
    "Petrov", "Rossi", "Schmidt", "Silva", "Smith", "Tanaka", "Wang", "Øvergaard",
    "Смирнов",
)  # fmt: skip


def _slug(text_: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_.lower() if ch.isalnum())


class SeedPeople(Timeline):
    """Donors, their checkouts and where they came from."""

    def attribution(self) -> dict[str, str | None]:
        campaign = weighted(self.rng, CAMPAIGNS)
        source = weighted(self.rng, UTM_SOURCES)
        if campaign and self.rng.random() < 0.4:
            return {
                "campaign": campaign,
                "utm_source": source or "article",
                "utm_medium": "appeal",
                "utm_content": f"story-{self.rng.randrange(1, 400)}",
                "utm_term": self.rng.choice(("a", "b")),
            }
        medium = {"newsletter": "email", "mastodon": "social", "facebook": "social"}
        return {
            "campaign": campaign,
            "utm_source": source,
            "utm_medium": medium.get(source or "", "referral" if source else None),
            "utm_content": None,
            "utm_term": None,
        }

    # -- records

    def add_donor(self, first_seen: datetime) -> tuple[int, str, str, str]:
        donor_id = self.writer.new_id("donors")
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        name = f"{first} {last}"
        roll = self.rng.random()
        if roll < 0.002:
            name = f"=HYPERLINK({last})"  # a typed name a spreadsheet must not run
        elif roll < 0.03:
            name = ""
        email = f"{_slug(first) or 'reader'}.{_slug(last) or 'reader'}.{donor_id}@{EMAIL_DOMAIN}"
        customer = f"cus_{self.tag}{donor_id:09d}"
        self.writer.add(
            "donors",
            {
                "id": donor_id,
                "email": email,
                "name": name or None,
                "created_at": first_seen,
                "updated_at": first_seen,
            },
        )
        self.writer.add(
            "stripe_customers",
            {
                "id": self.writer.new_id("stripe_customers"),
                "stripe_customer_id": customer,
                "donor_id": donor_id,
                "livemode": False,
                "created_at": first_seen,
            },
        )
        self.result.donors += 1
        return donor_id, email, name, customer

    def add_checkout(
        self,
        donor: tuple[int, str, str, str],
        *,
        frequency: str,
        currency: str,
        amount: int,
        at: datetime,
        status: str,
        attribution: dict[str, str | None],
    ) -> tuple[str, int]:
        """A checkout record; returns its id and what the donor is charged."""
        checkout_id = self.stripe_id("co")
        cover = processing_fee(currency, amount) if self.rng.random() < 0.3 else 0
        self.writer.add(
            "checkouts",
            {
                "id": checkout_id,
                "donor_id": donor[0],
                "email": donor[1],
                "name": donor[2] or None,
                "frequency": frequency,
                "currency": currency,
                "amount_minor": amount,
                "fee_cover_minor": cover,
                "total_minor": amount + cover,
                "cover_fees": cover > 0,
                **attribution,
                "dedication_kind": None,
                "dedication_name": None,
                "anonymous": self.rng.random() < 0.05,
                "comment": None,
                "locale": "ru" if self.rng.random() < 0.1 else "en",
                "stripe_checkout_session_id": self.stripe_id("cs_test"),
                "stripe_checkout_url": None,
                "stripe_customer_id": donor[3] if status == "complete" else None,
                "livemode": False,
                "status": status,
                "created_at": at,
                "updated_at": at,
                "expires_at": at + timedelta(hours=24),
                "completed_at": at + timedelta(minutes=2) if status == "complete" else None,
            },
        )
        self.result.checkouts += 1
        return checkout_id, amount + cover

    def add_abandoned(
        self, donor: tuple[int, str, str, str], frequency: str, currency: str
    ) -> None:
        """Checkouts that never completed: for the campaigns' conversion."""
        roll = self.rng.random()
        if roll < 0.3:
            at = self.moment()
            status = "expired" if self.now - at > timedelta(hours=24) else "open"
            self.add_checkout(
                donor,
                frequency=frequency,
                currency=currency,
                amount=self.amount(ONCE_AMOUNTS, currency),
                at=at,
                status=status,
                attribution=self.attribution(),
            )
