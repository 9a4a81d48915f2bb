#!/usr/bin/env python3
"""End-to-end check of the CAS server with a real third-party CAS client library: python-cas
(PyPI), in its CAS 1, 2, 3 and SAML 1.1 flavours, against the real `sesame demo` binary.

Services are registered from the outside with `sesame service add`. The browser part is a scripted
form client using only the documented field names; every ticket is validated by python-cas
itself. It checks: login through the form and validation with attributes (CAS 3, CAS 2), SSO into
a second service without a password, CAS 1, a replayed ticket refused, logout with `service`
(v3) redirecting only to a registered service, and `url` (v2) ignored.

Usage: cas_e2e.py SESAME_BINARY   (needs python-cas importable). Only 127.0.0.1 is contacted.
"""
import os
import signal
import subprocess
import sys
import tempfile
import urllib.parse

from cas import CASClient

import e2e_support
from e2e_support import Browser, check, field, free_port, session_cookie, wait_for_banner

USER, PASSWORD = "ana.menard", "cheval agrafe pile correcte"


def path_of(url, base):
    return url[len(base):] if url.startswith(base) else url


def login_through_form(browser, base, login_url):
    """Follows /cas/login → /login, submits the form, returns the service URL with its ticket."""
    status, headers, _ = browser.request(path_of(login_url, base))
    check(status == 303 and headers["location"].startswith("/login?flow="),
          f"CAS login sends an unknown browser to the login form ({status})")
    form_path = headers["location"]
    status, _, page = browser.request(form_path)
    flow = field(page, "flow")
    status, headers, _ = browser.request("/login", {
        "csrf": browser.csrf(page), "flow": flow, "username": USER, "password": PASSWORD})
    check(status == 303 and "ticket=ST-" in headers.get("location", ""),
          "the login form returns to the service with a ticket")
    return headers["location"]


def ticket_of(url):
    return urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["ticket"][0]


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="sesame-cas-e2e-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SESAME_DATA_DIR": os.path.join(work, "data"),
        "SESAME_KEYS__DIR": os.path.join(work, "keys"),
        "SESAME_LOG__LEVEL": "warn",
        "SESAME_CAS__ALLOW_HTTP_SERVICES": "true",
        "SESAME_SERVER__PUBLIC_URL": base + "/",
    }
    # Two applications (they need not run: python-cas validates the tickets they would get).
    app_a = f"http://127.0.0.1:{free_port()}/moodle/login/index.php?authCAS=CAS"
    app_b = f"http://127.0.0.1:{free_port()}/bib/"
    for service_id, url, extra in [("moodle", app_a, []), ("bib", app_b, ["--no-cas2-attributes"])]:
        prefix = url.split("?")[0].rsplit("/", 1)[0] + "/"
        added = subprocess.run(
            [binary, "service", "add", service_id, "--name", service_id.upper(), "--url", prefix,
             "--attribute", "mail,displayName,eduPersonAffiliation,supannEtuId", *extra],
            env=env, cwd=work, capture_output=True, text=True)
        check(added.returncode == 0, f"sesame service add {service_id} ({added.stderr.strip()})")

    out_log = os.path.join(work, "stdout.log")
    server = subprocess.Popen([binary, "demo", "--listen", f"127.0.0.1:{port}"], env=env, cwd=work,
                              stdout=open(out_log, "w"), stderr=subprocess.STDOUT, text=True)
    try:
        banner = wait_for_banner(out_log, server)
        check("listening on" in banner, "sesame demo starts")
        server_url = base + "/cas/"

        # CAS 3 (p3/serviceValidate), through the form.
        v3 = CASClient(version=3, service_url=app_a, server_url=server_url)
        browser = Browser(base)
        back = login_through_form(browser, base, v3.get_login_url())
        ticket = ticket_of(back)
        user, attributes, _ = v3.verify_ticket(ticket)
        check(user == USER, f"python-cas v3 validates the ticket: user {user}")
        check(attributes.get("supannEtuId") == "22000011"
              and attributes.get("mail") == f"{USER}@etu.uca.fr"
              and "student" in attributes.get("eduPersonAffiliation", [])
              and attributes.get("isFromNewLogin") == "true",
              f"python-cas v3 reads the attributes ({sorted(attributes)})")
        user, _, _ = v3.verify_ticket(ticket)
        check(user is None, "a replayed ticket is refused")

        # CAS 2 (serviceValidate) with attributes, into the same service, by SSO.
        v2 = CASClient(version=2, service_url=app_a, server_url=server_url)
        status, headers, _ = browser.request(path_of(v2.get_login_url(), base))
        check(status == 303 and "ticket=ST-" in headers["location"], "SSO: a ticket without the form")
        user, attributes, _ = v2.verify_ticket(ticket_of(headers["location"]))
        check(user == USER and attributes.get("isFromNewLogin") == "false"
              and attributes.get("displayName") == "Ana Ménard",
              f"python-cas v2 reads attributes on serviceValidate ({sorted(attributes or {})})")

        # A second service, which releases attributes only on CAS 3.
        v2b = CASClient(version=2, service_url=app_b, server_url=server_url)
        status, headers, _ = browser.request(path_of(v2b.get_login_url(), base))
        check(status == 303 and headers["location"].startswith(app_b), "SSO into a second service")
        user, attributes, _ = v2b.verify_ticket(ticket_of(headers["location"]))
        check(user == USER and not attributes, "no attributes on CAS 2 for a service that said so")

        # SAML 1.1 (/samlValidate), python-cas's CAS_2_SAML_1_0 client.
        saml = CASClient(version="CAS_2_SAML_1_0", service_url=app_a, server_url=server_url)
        status, headers, _ = browser.request(path_of(saml.get_login_url(), base))
        user, attributes, _ = saml.verify_ticket(ticket_of(headers["location"]))
        check(user == USER and attributes.get("supannEtuId") == "22000011",
              f"python-cas validates over SAML 1.1 with attributes ({sorted(attributes or {})})")

        # CAS 1.
        v1 = CASClient(version=1, service_url=app_b, server_url=server_url)
        status, headers, _ = browser.request(path_of(v1.get_login_url(), base))
        user, _, _ = v1.verify_ticket(ticket_of(headers["location"]))
        check(user == USER, "python-cas v1 validates on /validate")

        # Logout: v3 sends `service` (redirect to a registered one), v2 sends `url` (ignored).
        cookie = session_cookie(browser)
        status, headers, _ = browser.request(path_of(v3.get_logout_url(redirect_url=app_b), base))
        check(status == 303 and headers["location"] == app_b,
              "logout with service= returns to a registered service")
        status, headers, _ = browser.request(path_of(v3.get_login_url(), base))
        check(headers["location"].startswith("/login?flow="), "after logout, the password is asked again")
        other = Browser(base)
        login_through_form(other, base, v3.get_login_url())
        status, headers, page = other.request(
            path_of(v2.get_logout_url(redirect_url="https://evil.example/"), base))
        check(status == 200 and "location" not in headers, "logout with url= does not redirect")
        check(cookie is not None and session_cookie(other) is None, "the session cookie is cleared")
        status, _, page = Browser(base).request(
            "/cas/login?service=" + urllib.parse.quote("https://evil.example/", safe=""))
        check(status == 403 and "ticket" not in page.lower().split("<main")[1][:200],
              "an unregistered service gets an error page")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    check(server.returncode == 0, "the server stops cleanly on SIGTERM")
    print(f"{e2e_support.PASSED} passed, 0 failed")


if __name__ == "__main__":
    main()
