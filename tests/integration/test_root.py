"""`/` leads to the donation page, keeping what the link carried."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_the_root_leads_to_the_donation_page(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code in (301, 302, 303, 307, 308)
    assert response.headers["Location"] in ("/donate", "http://localhost/donate")
    assert client.get("/", follow_redirects=True).status_code == 200


def test_the_root_keeps_the_query_string_for_the_form(client: FlaskClient) -> None:
    response = client.get("/?campaign=spring&utm_source=newsletter")
    assert response.headers["Location"].endswith("/donate?campaign=spring&utm_source=newsletter")
