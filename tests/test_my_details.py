"""My details: what a signed-in person sees and changes about their account."""

from mailserver import text_of
from rp import RP, make_user, query

NEW_PASSWORD = "a brand new passphrase 2027"


def test_my_details_shows_account_methods_sessions_and_sign_ins(rp):
    rp.sign_in(rp.authorize())
    page = rp.browser.get("/account").get_data(as_text=True)
    for expected in (
        "Buffy Summers",
        "buffy@example.com",
        "The authenticator app",
        "Change MFA information",
        "this browser",
        "Signed in",
        "Add a second sign-in method",
    ):
        assert expected in page, expected


def test_change_password_needs_the_current_one_and_signs_out_other_browsers(app, rp, clock):
    other = RP(app, app.test_client(), clock, rp.user)
    other.sign_in(other.authorize())
    rp.sign_in(rp.authorize())
    wrong = rp.browser.post(
        "/account/password",
        data={"current": "not it at all", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert wrong.status_code == 401 and "current password is not right" in wrong.get_data(as_text=True)
    weak = rp.browser.post(
        "/account/password",
        data={"current": rp.user.password, "password": "password123", "confirm": "password123"},
    )
    assert weak.status_code == 422
    done = rp.browser.post(
        "/account/password",
        data={"current": rp.user.password, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert done.status_code == 303
    assert "1 other browser was signed out" in rp.browser.get("/account").get_data(as_text=True)
    assert query(other.authorize(prompt="none").location)["error"] == "login_required"
    assert rp.code_from(rp.authorize(prompt="none"))  # this browser stays signed in
    rp.user.password = NEW_PASSWORD
    rp.browser.post("/logout", data={"confirm": "1"})
    assert rp.code_from(rp.sign_in(rp.authorize()))


def test_the_logo_is_configurable(make_app, tmp_path):
    custom = tmp_path / "brand.svg"
    custom.write_text('<svg xmlns="http://www.w3.org/2000/svg"><title>Brand</title></svg>')
    with make_app().test_client().get("/logo") as default:
        assert default.status_code == 200 and default.mimetype == "image/svg+xml"
    branded = make_app(PORTAL_LOGO=str(custom), PORTAL_NAME="Acme Login").test_client()
    with branded.get("/logo") as logo:
        assert b"<title>Brand</title>" in logo.data
    page = branded.get("/login").get_data(as_text=True)
    assert "Acme Login" in page and 'src="/logo"' in page


def test_a_password_change_ends_every_other_sessions_tokens_offline_ones_too(mail_app, smtp_server, clock):
    """F-03: after Bob changed his password, the attacker's offline_access
    refresh token (and its access token) kept working, indefinitely with
    rotation. Now only this browser's session and its tokens survive."""
    bob = make_user(mail_app, email="bob@example.com")
    clock.advance(seconds=30)
    attacker = RP(mail_app, mail_app.test_client(), clock, bob)
    stolen_offline = attacker.tokens(scope="openid email offline_access")
    stolen_online = attacker.tokens()
    other = RP(mail_app, mail_app.test_client(), clock, bob)
    other.sign_in(other.authorize())
    mine = RP(mail_app, mail_app.test_client(), clock, bob)
    my_offline = mine.tokens(scope="openid email offline_access")

    done = mine.browser.post(
        "/account/password", data={"current": bob.password, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert done.status_code == 303
    page = mine.browser.get("/account").get_data(as_text=True)
    assert "2 other browsers were signed out and apps that stayed connected must sign in again" in page

    for tokens in (stolen_offline, stolen_online):
        assert mine.userinfo(tokens["access_token"]).status_code == 401
    refreshed = attacker.refresh(stolen_offline["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    assert query(attacker.authorize(prompt="none").location)["error"] == "login_required"
    # this browser stays signed in, and its apps stay connected
    assert mine.userinfo(my_offline["access_token"]).status_code == 200
    assert mine.refresh(my_offline["refresh_token"]).status_code == 200
    assert mine.code_from(mine.authorize(prompt="none"))

    mail = " ".join(text_of(smtp_server.last(bob.email)).split())
    assert "Every other browser signed in to it was signed out" in mail
    assert "apps that stayed connected to your account must sign in again" in mail
