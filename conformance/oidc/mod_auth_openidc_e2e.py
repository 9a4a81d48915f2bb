#!/usr/bin/env python3
"""End-to-end check of the OpenID Connect provider with mod_auth_openidc — Debian's
`libapache2-mod-auth-openidc`, an OpenID-certified relying party — protecting a location of an
Apache server, against the real `sesame demo` binary.

The client `apache` is registered from the outside with `sesame client add` (confidential,
client_secret_basic, first-party, with a post-logout URI and `<redirect_uri>?logout=backchannel`
as its back-channel logout URI). mod_auth_openidc reads Sésame's discovery document and uses PKCE
S256. A scripted browser (only the documented form fields, one cookie jar for every port of
127.0.0.1, as a browser has) checks: the login through Sésame's form lands on the protected page
with the claims; the claims come from the userinfo endpoint; the session-info hook's forced
refresh rotates the access and refresh tokens; mod_auth_openidc's `?logout=URL` goes through
Sésame's end_session endpoint and back to URL, ending both sessions and revoking the tokens (seen
by introspection); and a logout at Sésame itself reaches mod_auth_openidc by back-channel (its
session is gone).

The browser is scripted rather than Chromium: on purpose, so that this script checks the protocol
with mod_auth_openidc alone; what a real browser enforces (CSP, cookies) is openid_client_e2e.mjs's.

Usage: mod_auth_openidc_e2e.py SESAME_BINARY
(needs apache2, libapache2-mod-php and libapache2-mod-auth-openidc; only the standard library.)
Only 127.0.0.1 is contacted. Apache and Sésame are stopped by their PIDs.
"""
import base64
import glob
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import e2e_support  # noqa: E402
from e2e_support import Browser, check, field, free_port, wait_for_banner  # noqa: E402

USER, PASSWORD = "ana.menard", "cheval agrafe pile correcte"
USER_EMAIL = "ana.menard@etu.uca.fr"  # the demo's `mail` attribute (cas_e2e.py reads it too)

# The protected page: what mod_auth_openidc hands the application.
PAGE = """<?php
header('Content-Type: text/plain; charset=utf-8');
echo "REMOTE_USER=" . ($_SERVER['REMOTE_USER'] ?? '') . "\\n";
ksort($_SERVER);
foreach ($_SERVER as $name => $value) {
    if (strpos($name, 'OIDC_') === 0) {
        echo $name . "=" . $value . "\\n";
    }
}
"""

HTTPD = """Listen 127.0.0.1:{port}
ServerName 127.0.0.1:{port}
PidFile {work}/apache.pid
DefaultRuntimeDir {work}/run
ErrorLog {work}/apache-error.log
LogLevel warn auth_openidc:info
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authz_user_module /usr/lib/apache2/modules/mod_authz_user.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule php_module {libphp}
LoadModule auth_openidc_module /usr/lib/apache2/modules/mod_auth_openidc.so
TypesConfig /etc/mime.types
User www-data
Group www-data
DocumentRoot {work}/www
<Directory {work}/www>
    Require all granted
</Directory>
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
DirectoryIndex index.php

OIDCProviderMetadataURL {sesame}/.well-known/openid-configuration
OIDCClientID apache
OIDCClientSecret {secret}
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRedirectURI {redirect_uri}
OIDCCryptoPassphrase {passphrase}
OIDCScope "openid profile email"
OIDCPKCEMethod S256
OIDCRemoteUserClaim preferred_username
# The ID token only as one JSON variable: every OIDC_CLAIM_* then comes from the userinfo endpoint.
OIDCPassIDTokenAs payload
OIDCPassUserInfoAs claims json
OIDCPassClaimsAs environment
OIDCInfoHook access_token access_token_expires refresh_token userinfo
<Location /protected>
    AuthType openid-connect
    Require valid-user
</Location>
"""


class PageBrowser(Browser):
    """e2e_support's scripted browser, on absolute URLs, saying it wants HTML as a browser does
    (mod_auth_openidc answers 401 instead of redirecting to a client that does not)."""

    def __init__(self):
        super().__init__("")

    def request(self, url, fields=None, headers=None):
        return super().request(url, fields, dict({"Accept": "text/html,*/*;q=0.8"}, **(headers or {})))


def query(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def follow(browser, url, limit=10):
    """Follows redirects by hand; returns (status, headers, body, final URL)."""
    for _ in range(limit):
        status, headers, body = browser.request(url)
        if status not in (301, 302, 303, 307) or "location" not in headers:
            return status, headers, body, url
        url = urllib.parse.urljoin(url, headers["location"])
    return status, headers, body, url


def login(browser, sesame, protected, redirect_uri):
    """From the protected page through Sésame's form and back; returns the protected page."""
    status, headers, _ = browser.request(protected)
    authorize = headers.get("location", "")
    check(status == 302 and authorize.startswith(sesame + "/oidc/authorize?"),
          f"mod_auth_openidc sends the browser to Sésame's authorize endpoint ({status} {authorize[:70]})")
    parameters = query(authorize)
    check(parameters.get("client_id") == "apache" and parameters.get("response_type") == "code"
          and parameters.get("code_challenge_method") == "S256" and parameters.get("code_challenge")
          and parameters.get("redirect_uri") == redirect_uri and parameters.get("nonce"),
          "the request is a code flow with PKCE S256 and a nonce")
    status, headers, page, url = follow(browser, authorize)
    check(status == 200 and url.startswith(sesame + "/login?flow=") and 'name="password"' in page,
          f"Sésame shows its login form ({status} {url[:60]})")
    status, headers, _ = browser.request(sesame + "/login", {
        "csrf": field(page, "csrf"), "flow": field(page, "flow"), "username": USER, "password": PASSWORD})
    back = urllib.parse.urljoin(sesame, headers.get("location", ""))
    while status in (302, 303) and back.startswith(sesame + "/"):  # Sésame's own steps, if any
        status, headers, _ = browser.request(back)
        back = urllib.parse.urljoin(sesame, headers.get("location", ""))
    answer = query(back)
    check(status == 303 and back.startswith(redirect_uri + "?") and "code" in answer
          and answer.get("state") == parameters["state"] and answer.get("iss") == sesame,
          f"the form returns to mod_auth_openidc's redirect URI with code, state and iss ({back[:80]})")
    status, headers, _ = browser.request(back)
    check(status == 302 and headers.get("location", "").endswith("/protected/"),
          f"mod_auth_openidc redeems the code and returns to the page ({status} {headers.get('location', '')})")
    return follow(browser, protected)


def variables(page):
    return dict(line.split("=", 1) for line in page.splitlines() if "=" in line)


def info(browser, redirect_uri, refresh):
    """mod_auth_openidc's session-info hook; with `refresh`, it refreshes the access token first."""
    url = redirect_uri + "?info=json" + ("&access_token_refresh_interval=0" if refresh else "")
    status, _, body = browser.request(url)
    return status, (json.loads(body) if status == 200 else {})


def introspect(sesame, secret, token):
    """RFC 7662 introspection as the client `apache` (client_secret_basic); the JSON answer."""
    request = urllib.request.Request(
        sesame + "/oidc/introspect", data=urllib.parse.urlencode({"token": token}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(f"apache:{secret}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def signed_out_of_apache(browser, sesame, protected):
    status, headers, _ = browser.request(protected)
    return status == 302 and headers.get("location", "").startswith(sesame + "/oidc/authorize?")


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="sesame-openidc-")
    os.chmod(work, 0o755)
    sesame_port, apache_port = free_port(), free_port()
    sesame = f"http://127.0.0.1:{sesame_port}"
    apache = f"http://127.0.0.1:{apache_port}"
    protected = apache + "/protected/"
    redirect_uri = apache + "/protected/redirect_uri"
    bye = apache + "/bye.html"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SESAME_DATA_DIR": os.path.join(work, "data"),
        "SESAME_KEYS__DIR": os.path.join(work, "keys"),
        "SESAME_LOG__LEVEL": "warn",
        "SESAME_SERVER__PUBLIC_URL": sesame + "/",
        "SESAME_OIDC__ALLOW_HTTP_REDIRECTS": "true",
        # Outboxes (back-channel logout included) every second, and the maintenance pass too.
        "SESAME_MAIL__SEND_INTERVAL": "1s",
        "SESAME_MAINTENANCE__INTERVAL": "1s",
    }
    added = subprocess.run(
        [binary, "client", "add", "apache", "--name", "Apache", "--redirect-uri", redirect_uri,
         "--post-logout-redirect-uri", bye, "--backchannel-logout-uri", redirect_uri + "?logout=backchannel",
         "--auth-method", "client_secret_basic", "--first-party", "--json"],
        env=env, cwd=work, capture_output=True, text=True)
    check(added.returncode == 0, f"sesame client add apache ({added.stderr.strip() or 'exit 0'})")
    secret = json.loads(added.stdout)["client_secret"]

    www = os.path.join(work, "www")
    os.makedirs(os.path.join(www, "protected"))
    os.makedirs(os.path.join(work, "run"))
    with open(os.path.join(www, "protected", "index.php"), "w") as out:
        out.write(PAGE)
    with open(os.path.join(www, "bye.html"), "w") as out:
        out.write("<!doctype html><title>bye</title><p>bye</p>\n")
    for root, dirs, files in os.walk(www):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(www, 0o755)
    libphp = sorted(glob.glob("/usr/lib/apache2/modules/libphp*.so"))[-1]
    conf = os.path.join(work, "httpd.conf")
    with open(conf, "w") as out:
        out.write(HTTPD.format(port=apache_port, work=work, libphp=libphp, sesame=sesame, secret=secret,
                               redirect_uri=redirect_uri, passphrase=secrets.token_hex(16)))
    syntax = subprocess.run(["apache2", "-f", conf, "-t"], capture_output=True, text=True)
    check(syntax.returncode == 0, f"apache2 -t accepts the mod_auth_openidc configuration ({syntax.stderr.strip()})")

    out_log = os.path.join(work, "sesame.log")
    server = subprocess.Popen([binary, "demo", "--listen", f"127.0.0.1:{sesame_port}"], env=env, cwd=work,
                              stdout=open(out_log, "w"), stderr=subprocess.STDOUT)
    httpd = subprocess.Popen(["apache2", "-f", conf, "-DFOREGROUND"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                             start_new_session=True)  # Apache signals its process group
    try:
        check("listening on" in wait_for_banner(out_log, server), "sesame demo starts")
        browser = PageBrowser()  # one cookie jar for every port of 127.0.0.1, as in a browser
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                browser.request(bye)
                break
            except OSError:
                time.sleep(0.2)
        check(browser.request(bye)[0] == 200, "Apache with mod_auth_openidc starts")

        # Login: the claims on the protected page come from the userinfo endpoint.
        status, _, page, _ = login(browser, sesame, protected, redirect_uri)
        seen = variables(page)
        check(status == 200 and seen.get("REMOTE_USER") == USER,
              f"the protected page is served to {seen.get('REMOTE_USER')} (OIDCRemoteUserClaim preferred_username)")
        check(seen.get("OIDC_CLAIM_preferred_username") == USER and seen.get("OIDC_CLAIM_email") == USER_EMAIL,
              f"the page gets preferred_username and email ({seen.get('OIDC_CLAIM_email')})")
        userinfo = json.loads(seen.get("OIDC_userinfo_json") or "{}")
        check(userinfo.get("preferred_username") == USER and userinfo.get("email") == USER_EMAIL
              and userinfo.get("sub"), "mod_auth_openidc called the userinfo endpoint (OIDC_userinfo_json)")
        id_token = json.loads(seen.get("OIDC_id_token_payload") or "{}")
        check(id_token.get("iss") == sesame and id_token.get("aud") in ("apache", ["apache"])
              and id_token.get("sid") and id_token.get("sub") == userinfo.get("sub"),
              f"the ID token mod_auth_openidc validated has iss, aud, sid, and the userinfo's sub ({sorted(id_token)})")

        # Refresh: the info hook's access_token_refresh_interval=0 forces a refresh_token grant.
        status, before = info(browser, redirect_uri, refresh=False)
        check(status == 200 and before.get("access_token") and before.get("refresh_token"),
              f"the session holds an access token and a refresh token ({status})")
        previous = before
        for attempt in (1, 2):
            status, after = info(browser, redirect_uri, refresh=True)
            check(status == 200 and after.get("access_token") not in (None, previous["access_token"])
                  and after.get("refresh_token") not in (None, previous["refresh_token"]),
                  f"refresh {attempt}: mod_auth_openidc gets a new access token and a rotated refresh token")
            previous = after
        status, _, page = browser.request(protected)
        check(status == 200 and variables(page).get("OIDC_access_token") == previous["access_token"],
              "the page runs on with the refreshed access token")

        held = previous
        check(introspect(sesame, secret, held["access_token"]).get("active") is True
              and introspect(sesame, secret, held["refresh_token"]).get("active") is True,
              "introspection says the tokens mod_auth_openidc holds are active")

        # RP-initiated logout through mod_auth_openidc: ?logout=URL → end_session → URL.
        status, headers, _ = browser.request(redirect_uri + "?logout=" + urllib.parse.quote(bye, safe=""))
        end_session = headers.get("location", "")
        check(status == 302 and end_session.startswith(sesame + "/oidc/logout?")
              and query(end_session).get("id_token_hint") and query(end_session).get("post_logout_redirect_uri") == bye,
              f"mod_auth_openidc sends the browser to end_session with id_token_hint ({end_session[:70]})")
        status, headers, _ = browser.request(end_session)
        check(status in (302, 303) and headers.get("location") == bye,
              f"Sésame ends the session and returns to the post-logout URI ({status} {headers.get('location')})")
        check(introspect(sesame, secret, held["access_token"]).get("active") is False
              and introspect(sesame, secret, held["refresh_token"]).get("active") is False,
              "after the logout, the tokens mod_auth_openidc held are no longer active (revoked, RFC 7009)")
        status, headers, _ = browser.request(protected)
        authorize = headers.get("location", "")
        check(status == 302 and authorize.startswith(sesame + "/oidc/authorize?"),
              "mod_auth_openidc's session is gone: the page sends to Sésame again")
        status, _, page, url = follow(browser, authorize)
        check(url.startswith(sesame + "/login?flow=") and 'name="password"' in page,
              "Sésame's session is gone too: it asks for the password")

        # Back-channel logout: log in again, then sign out at Sésame itself.
        browser = PageBrowser()
        status, _, page, _ = login(browser, sesame, protected, redirect_uri)
        check(status == 200 and variables(page).get("REMOTE_USER") == USER, "a new login reaches the page")
        status, _, page = browser.request(sesame + "/logout")
        status, _, _ = browser.request(sesame + "/logout", {"csrf": field(page, "csrf")})
        check(status == 200 and not any(c.name == "sesame" for c in browser.jar),
              "the user signs out at Sésame (POST /logout)")
        gone = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not gone:
            time.sleep(0.5)
            gone = signed_out_of_apache(browser, sesame, protected)
        if not gone:
            print(open(os.path.join(work, "apache-error.log")).read()[-3000:], file=sys.stderr)
        check(gone, "the back-channel logout reached mod_auth_openidc: its session is gone")
    finally:
        httpd.send_signal(signal.SIGTERM)
        server.send_signal(signal.SIGTERM)
        httpd.wait(timeout=30)
        server.wait(timeout=30)
    check(server.returncode == 0, "the server stops cleanly on SIGTERM")
    print(f"{e2e_support.PASSED} passed, 0 failed")


if __name__ == "__main__":
    main()
