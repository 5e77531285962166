"""The operator console in a real browser: Debian's headless Chromium driven by Playwright against
a live `bootvault serve`, with the oci SDK as the independent witness of what changed.

The tests of this module share one deployment and one signed-in browser page and run in order
(sign-in first, sign-out and the rate limit last)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from oci.core.models import CreateBootVolumeBackupDetails, UpdateBootVolumeBackupDetails
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import MIB, Deployment, Tenant, log_entries, make_image, sha256_file, wait_state

pytestmark = pytest.mark.slow(3)

CHROMIUM = "/usr/bin/chromium"
GIB = 1 << 30
PASSWORD = "correct horse battery staple"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">\u202eevil'
LIVE_MARK = "window.__sameDocument = 'kept'"  # survives only if the page is never reloaded


class Console:
    def __init__(self, dep: Deployment, tenant: Tenant, volume_id: str, image: Path) -> None:
        self.dep, self.tenant, self.volume_id, self.image = dep, tenant, volume_id, image
        self.base = f"{dep.endpoint}/console"
        self.state: dict[str, str] = {}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    dep = Deployment(root)
    dep.env["BOOTVAULT_SCHEDULER_INTERVAL_SECONDS"] = "1"
    dep.start()
    try:
        tenant = dep.new_tenant("operators")
        image = root / "disk.img"
        make_image(image, 24 * MIB, seed=11)
        volume_id = dep.import_volume(tenant, image, "web-01 boot")
        dep.cli("user", "create", "--tenancy", tenant.tenancy_id, "--name", "olivia", input=PASSWORD + "\n")
        yield Console(dep, tenant, volume_id, image)
    finally:
        dep.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, console: Console) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    pg.errors: list[str] = []  # type: ignore[misc]
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))  # type: ignore[attr-defined]
    # Chromium reports what the Content-Security-Policy blocked as console errors.
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))  # type: ignore[attr-defined]
    yield pg
    context.close()


def sign_in(page: Page, console: Console, name: str = "olivia", password: str = PASSWORD) -> None:
    page.goto(f"{console.base}/sign-in")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def session_cookie(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "bv_session")


def test_sign_in(page: Page, console: Console) -> None:
    page.goto(f"{console.base}/")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))  # no session: the sign-in form
    sign_in(page, console, password="wrong password, surely")
    expect(page.get_by_role("alert")).to_contain_text("The user name or password is incorrect.")
    sign_in(page, console)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("Signed in as olivia")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "bv_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] not in page.content() and cookie["value"] not in page.url
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read the session


def test_create_backup_and_watch_progress_reach_100(page: Page, console: Console) -> None:
    page.goto(f"{console.base}/volumes/{console.volume_id}")
    page.get_by_label("Name (optional)").fill("nightly")
    page.get_by_label("Full").check()
    page.get_by_role("button", name="Create backup").click()
    expect(page.get_by_role("heading", name="Backup nightly")).to_be_visible()
    backup_id = page.url.rsplit("/", 1)[-1]
    page.evaluate(LIVE_MARK)
    # The state and the progress bar update in place (htmx polling), without a reload.
    expect(page.locator("#backup-state")).to_have_text("AVAILABLE", timeout=120_000)
    expect(page.locator("#backup-progress progress")).to_have_attribute("value", "100")
    expect(page.locator("#backup-progress")).to_contain_text("100 %")
    assert page.evaluate("window.__sameDocument") == "kept"
    witnessed = console.tenant.client().get_boot_volume_backup(backup_id).data
    assert witnessed.lifecycle_state == "AVAILABLE" and witnessed.type == "FULL"
    assert witnessed.display_name == "nightly"
    console.state["backup"] = backup_id
    # The dashboard counts it and shows space and the dedup factor.
    page.goto(f"{console.base}/")
    expect(page.locator("#stored")).not_to_have_text("0 B")
    expect(page.locator("#factor")).to_contain_text("×")
    expect(page.locator("#stored-chart canvas")).to_have_count(1)  # uPlot drew the chart


def test_backup_list_refreshes_while_a_backup_runs(page: Page, console: Console) -> None:
    client = console.tenant.client()
    image = console.dep.root / "bulk.img"
    make_image(image, 96 * MIB, seed=12)  # big enough that its backup is still running when the page loads
    bulk = console.dep.import_volume(console.tenant, image, "bulk")
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=bulk, display_name="listed", type="FULL")
    ).data
    page.goto(f"{console.base}/backups?compartment={console.tenant.tenancy_id}&volume={bulk}")
    page.evaluate(LIVE_MARK)
    row = page.get_by_role("row", name=re.compile("^listed"))
    assert row.locator(".state").inner_text() in ("REQUEST_RECEIVED", "CREATING")
    expect(row.locator(".state")).to_have_text("AVAILABLE", timeout=120_000)
    assert page.evaluate("window.__sameDocument") == "kept"
    assert client.get_boot_volume_backup(made.id).data.lifecycle_state == "AVAILABLE"
    page.wait_for_timeout(2500)  # nothing runs now: the table stopped polling
    expect(page.locator("#live")).not_to_have_attribute("hx-trigger", re.compile("."))


def test_restore_backup_to_new_volume(page: Page, console: Console) -> None:
    page.goto(f"{console.base}/backups/{console.state['backup']}")
    page.get_by_label("Name of the new volume (optional)").fill("web-01 restored")
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("heading", name="Boot volume web-01 restored")).to_be_visible()
    volume_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator(".state").first).to_have_text("AVAILABLE", timeout=60_000)
    expect(page.get_by_text("hydrated", exact=True)).to_be_visible(timeout=120_000)
    assert console.dep.volume_sha256(volume_id, GIB) == sha256_file(console.image, GIB)


def test_delete_backup_with_confirmation(page: Page, console: Console) -> None:
    client = console.tenant.client()
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=console.volume_id, display_name="to-delete")
    )
    wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE")
    page.goto(f"{console.base}/backups/{made.data.id}")
    page.get_by_role("link", name="Delete this backup…").click()
    expect(page.get_by_role("heading", name="Delete backup to-delete?")).to_be_visible()
    page.get_by_role("button", name="Delete backup").click()
    expect(page.locator("#backup-state")).to_have_text(re.compile("TERMINATING|TERMINATED"))
    expect(page.locator("#backup-state")).to_have_text("TERMINATED", timeout=60_000)
    assert client.get_boot_volume_backup(made.data.id).data.lifecycle_state == "TERMINATED"


def test_held_backup_says_why_it_cannot_be_deleted(page: Page, console: Console) -> None:
    client = console.tenant.client()
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=console.volume_id, display_name="evidence")
    )
    wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE")
    page.goto(f"{console.base}/backups/{made.data.id}")
    page.get_by_text("Retention, lock and legal hold").click()
    page.get_by_label("Legal hold").check()
    page.get_by_role("button", name="Save retention").click()
    expect(page.locator("#blocker")).to_contain_text("legal hold")
    assert client.get_boot_volume_backup(made.data.id).data.is_indefinite_retention_enabled is True
    page.get_by_role("link", name="Delete this backup…").click()
    expect(page.locator("#blocker")).to_contain_text("cannot be deleted until the hold is cleared")
    expect(page.get_by_role("button", name="Delete backup")).to_have_count(0)


def test_assign_and_remove_policy(page: Page, console: Console) -> None:
    client = console.tenant.client()
    page.goto(f"{console.base}/volumes/{console.volume_id}")
    page.get_by_text("Assign or remove a backup policy").click()
    page.get_by_label("Policy").select_option(label="gold (Oracle)")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("link", name="gold")).to_be_visible()
    found = client.get_volume_backup_policy_asset_assignment(console.volume_id).data
    assert len(found) == 1 and found[0].policy_id.startswith("ocid1.volumebackuppolicy.oc1..")
    gold = client.get_volume_backup_policy(found[0].policy_id).data
    assert gold.display_name == "gold"
    page.goto(f"{console.base}/")  # the dashboard's next scheduled backups list it
    expect(page.get_by_role("link", name="gold")).to_be_visible()
    page.goto(f"{console.base}/volumes/{console.volume_id}")
    page.get_by_text("Assign or remove a backup policy").click()
    page.get_by_label("Policy").select_option(value="")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("link", name="gold")).to_have_count(0)
    assert client.get_volume_backup_policy_asset_assignment(console.volume_id).data == []


def test_hostile_names_and_tags_are_shown_as_text(page: Page, console: Console) -> None:
    client = console.tenant.client()
    backup_id = console.state["backup"]
    client.update_boot_volume_backup(
        backup_id,
        UpdateBootVolumeBackupDetails(display_name=HOSTILE, freeform_tags={"note": HOSTILE[:250]}),
    )
    pages = ("/backups/" + backup_id, "/backups", "/volumes/" + console.volume_id)
    for url in (console.base + p for p in pages):
        page.goto(url)
        expect(page.get_by_text("window.__pwned = 1").first).to_be_visible()
        # Isolated in <bdi>: its right-to-left override cannot reorder the text around it.
        expect(page.locator("bdi", has_text="window.__pwned = 1").first).to_be_visible()
        assert page.evaluate("window.__pwned") is None
    # The same through the console's own form: a tag typed in the browser.
    page.goto(f"{console.base}/backups/{backup_id}")
    page.get_by_text("Rename and tag").click()
    page.get_by_label("Free-form tags").fill("owner=<b onmouseover=alert(1)>x</b>\nlong=" + "y" * 200)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("owner = <b onmouseover=alert(1)>x</b>")).to_be_visible()
    assert (
        client.get_boot_volume_backup(backup_id).data.freeform_tags["owner"]
        == "<b onmouseover=alert(1)>x</b>"
    )
    # A 10,000-character name is refused with the API's message, shown as text.
    page.get_by_text("Rename and tag").click()
    page.get_by_label("Name", exact=True).fill("n" * 10_000)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "InvalidParameter: displayName must be between 1 and 255 characters long."
    )
    assert page.evaluate("window.__pwned") is None
    # No script error, and nothing the Content-Security-Policy had to block, on any page so far.
    problems = [e for e in page.errors if not e.startswith("Failed to load resource")]  # type: ignore[attr-defined]
    assert problems == []


def test_move_backup_and_clone_volume(page: Page, console: Console) -> None:
    client = console.tenant.client()
    name = ("staging \u202e" + "<script>window.__pwned=3</script>" * 310)[:10_000]
    compartment = (
        console.dep.cli("compartment", "create", "--parent", console.tenant.tenancy_id, "--name", name)
        .stdout.strip()
        .splitlines()[-1]
    )
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=console.volume_id, display_name="mover")
    )
    wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE")
    page.goto(f"{console.base}/backups/{made.data.id}")
    page.get_by_text("Move to another compartment").click()
    page.locator("#bk-comp").select_option(compartment)
    page.get_by_role("button", name="Move").click()
    expect(page.get_by_role("heading", name="Backup mover")).to_be_visible()
    assert client.get_boot_volume_backup(made.data.id).data.compartment_id == compartment
    page.goto(f"{console.base}/backups?compartment={compartment}")
    expect(page.get_by_role("link", name="mover")).to_be_visible()
    page.goto(f"{console.base}/compartments")
    expect(page.get_by_text("<script>window.__pwned=3</script>").first).to_be_attached()
    assert page.evaluate("window.__pwned") is None
    # Clone the volume from its page; the clone's bytes are the source's.
    page.goto(f"{console.base}/volumes/{console.volume_id}")
    page.get_by_text("Clone", exact=True).click()
    page.get_by_label("Name of the clone (optional)").fill("web-01 clone")
    page.get_by_role("button", name="Clone volume").click()
    expect(page.get_by_role("heading", name="Boot volume web-01 clone")).to_be_visible()
    clone_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator(".state").first).to_have_text("AVAILABLE", timeout=120_000)
    assert console.dep.volume_sha256(clone_id, GIB) == console.dep.volume_sha256(console.volume_id, GIB)


def test_lone_surrogate_in_a_form_is_refused(page: Page, console: Console) -> None:
    backup_id = console.state["backup"]
    page.goto(f"{console.base}/backups/{backup_id}")
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(
        f"{console.base}/backups/{backup_id}/update",
        data=f"csrf_token={csrf}&display_name=%ED%A0%80",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 400 and "not valid UTF-8" in response.text()


def test_other_tenancys_backup_is_not_found(page: Page, console: Console) -> None:
    other = console.dep.new_tenant("strangers")
    image = console.dep.root / "other.img"
    make_image(image, 2 * MIB, seed=3)
    volume_id = console.dep.import_volume(other, image, "theirs")
    client = other.client()
    made = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
    wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE")
    for url in (
        f"{console.base}/backups/{made.data.id}",
        f"{console.base}/volumes/{volume_id}",
        f"{console.base}/backups?compartment={other.tenancy_id}",
        f"{console.base}/backups/{made.data.id}/delete",
    ):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
        expect(page.get_by_role("alert")).to_contain_text(
            "NotAuthorizedOrNotFound: Authorization failed or requested resource not found."
        )
        expect(page.get_by_text("theirs")).to_have_count(0)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(
        f"{console.base}/backups/{made.data.id}/delete",
        form={"csrf_token": csrf or "", "confirm": "yes"},
    )
    assert response.status == 404
    assert client.get_boot_volume_backup(made.data.id).data.lifecycle_state == "AVAILABLE"


def test_change_without_csrf_token_is_refused(page: Page, console: Console) -> None:
    backup_id = console.state["backup"]
    client = console.tenant.client()
    before = client.get_boot_volume_backup(backup_id).data.display_name
    page.goto(f"{console.base}/backups/{backup_id}")
    for form in ({"display_name": "forged"}, {"display_name": "forged", "csrf_token": "guess"}):
        response = page.request.post(f"{console.base}/backups/{backup_id}/update", form=form)
        assert response.status == 403 and "CSRF token is missing or wrong" in response.text()
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    cross_site = page.request.post(
        f"{console.base}/backups/{backup_id}/update",
        form={"display_name": "forged", "csrf_token": csrf},
        headers={"origin": "https://evil.example"},
    )
    assert cross_site.status == 403
    assert client.get_boot_volume_backup(backup_id).data.display_name == before
    # Signing out is a change too: without the token it is refused and the session lives on.
    assert page.request.post(f"{console.base}/sign-out", form={}).status == 403
    page.goto(f"{console.base}/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_attached_volume_shows_its_nbd_uri(page: Page, console: Console) -> None:
    uri = console.dep.attach(console.volume_id)
    try:
        page.goto(f"{console.base}/volumes/{console.volume_id}")
        expect(page.get_by_label("NBD URI")).to_have_value(uri)
        page.get_by_role("button", name="Copy").click()  # selects the URI and copies it
        assert page.evaluate("document.getSelection().toString() || document.activeElement.value") == uri
        page.goto(f"{console.base}/volumes?compartment={console.tenant.tenancy_id}")
        row = page.get_by_role("row", name=re.compile("web-01 boot"))
        expect(row.get_by_role("cell", name="yes", exact=True)).to_be_visible()
    finally:
        console.dep.cli("volume", "detach", console.volume_id)


ALL_PAGES = ["/", "/compartments", "/volumes", "/backups", "/policies"]


def test_every_control_is_labelled_and_keyboard_reachable(page: Page, console: Console) -> None:
    unlabelled = """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.outerHTML)"""
    details = [f"/volumes/{console.volume_id}", f"/backups/{console.state['backup']}"]
    for path in ALL_PAGES + details:
        page.goto(console.base + path)
        assert page.evaluate(unlabelled) == [], path
        assert page.locator("h1").count() == 1, path
    # Keyboard only: the first Tab reaches the skip link, which moves focus to the content.
    page.goto(f"{console.base}/backups/{console.state['backup']}")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    # A form is opened and sent with the keyboard alone.
    summary = page.get_by_text("Rename and tag")
    summary.focus()
    page.keyboard.press("Enter")
    name = page.get_by_label("Name", exact=True)
    expect(name).to_be_visible()
    name.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("renamed by keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Backup renamed by keyboard")).to_be_visible()


AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js"
AUDIT = """axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    .then(r => r.violations.map(v => v.id + ": " + v.nodes.map(n => n.target.join(" ")).join(", ")))"""


def test_pages_pass_an_automated_wcag_audit(browser: Browser, console: Console) -> None:
    """axe-core's WCAG 2.1 A/AA rules (contrast, labels, names, structure) on every page. The
    audit's script is injected, so this context alone bypasses the CSP."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True)
    try:
        pg = context.new_page()
        pg.goto(f"{console.base}/sign-in")
        found = {"/sign-in": pg.add_script_tag(path=str(AXE)) and pg.evaluate(AUDIT)}
        sign_in(pg, console)
        backup = console.state["backup"]
        for path in [
            *ALL_PAGES,
            f"/volumes/{console.volume_id}",
            f"/backups/{backup}",
            f"/backups/{backup}/delete",
        ]:
            pg.goto(console.base + path)
            pg.add_script_tag(path=str(AXE))
            found[path] = pg.evaluate(AUDIT)
        assert {p: v for p, v in found.items() if v} == {}
    finally:
        context.close()


def test_sign_out_ends_the_session(page: Page, console: Console) -> None:
    page.goto(f"{console.base}/")
    token = session_cookie(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    # The old cookie, replayed, no longer opens anything: the session row is gone.
    replay = httpx.get(f"{console.base}/", cookies={"bv_session": token}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/console/sign-in"
    page.goto(f"{console.base}/backups")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))


def test_sign_in_attempts_are_rate_limited(console: Console) -> None:
    console.dep.cli(
        "user",
        "create",
        "--tenancy",
        console.tenant.tenancy_id,
        "--name",
        "mallory-target",
        input="another long password\n",
    )
    with httpx.Client(base_url=console.base) as http:

        def attempt(password: str) -> httpx.Response:
            form = http.get("/sign-in")
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
            assert nonce is not None
            data = {"nonce": nonce.group(1), "username": "mallory-target", "password": password}
            return http.post("/sign-in", data=data)

        for _ in range(5):
            assert attempt("guess").status_code == 401
        locked = attempt("another long password")  # even the right password, now
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
    entries = log_entries(console.dep.root / "server.log")
    failed = [e for e in entries if e["message"] == "console sign-in failed"]
    assert sum(e.get("userName") == "mallory-target" for e in failed) == 5
    assert all(e["address"] == "127.0.0.1" and e.get("opcRequestId") for e in failed)
    assert any(e["message"] == "console sign-in refused: rate limit" for e in entries)
