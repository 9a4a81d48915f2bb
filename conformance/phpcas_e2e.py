#!/usr/bin/env python3
"""End-to-end check of the CAS server with phpCAS — Debian's `php-cas`, the library Moodle's CAS
plug-in uses — running under Apache with mod_php, against the real `sesame` binary over TLS
(phpCAS only speaks https to its CAS server).

Two phpCAS applications (`/app1/`, `/app2/`) are registered from the outside with `sesame service
add --single-logout`. A scripted browser (only the documented form fields) checks: a login through
the form that phpCAS validates on /cas/p3/serviceValidate with attributes; SSO into the second
application without a password; phpCAS's logout with a `service` redirect; and single logout
reaching the second application, whose phpCAS session is destroyed.

Usage: phpcas_e2e.py SESAME_BINARY   (needs apache2, libapache2-mod-php, php-cas, requests)
Only 127.0.0.1 is contacted. Apache and Sésame are stopped by their PIDs.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import requests
import urllib3

import e2e_support
from e2e_support import check, field, free_port, wait_for_banner

urllib3.disable_warnings()
USER, PASSWORD = "ana.menard", "cheval agrafe pile correcte"

APP = """<?php
require_once 'CAS.php';
session_name('{session}');
phpCAS::client(CAS_VERSION_3_0, '127.0.0.1', {sesame_port}, '/cas', 'http://127.0.0.1:{apache_port}');
phpCAS::setNoCasServerValidation();
phpCAS::handleLogoutRequests(false);
if (isset($_GET['logout'])) {{
    phpCAS::logoutWithRedirectService('http://127.0.0.1:{apache_port}/{app}/bye.php');
}}
phpCAS::forceAuthentication();
header('Content-Type: text/plain; charset=utf-8');
echo "user=" . phpCAS::getUser() . "\\n";
foreach (phpCAS::getAttributes() as $name => $value) {{
    echo $name . "=" . (is_array($value) ? implode('|', $value) : $value) . "\\n";
}}
"""

HTTPD = """Listen 127.0.0.1:{port}
ServerName 127.0.0.1
PidFile {work}/apache.pid
ErrorLog {work}/apache-error.log
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule php_module {libphp}
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
"""


def follow(session, url, limit=10):
    """Follows redirects by hand (across http and https); returns the last response."""
    response = None
    for _ in range(limit):
        response = session.get(url, allow_redirects=False, verify=False, timeout=30)
        if response.status_code not in (301, 302, 303, 307):
            return response
        url = urllib.parse.urljoin(url, response.headers["location"])
    return response


def login(session, sesame, start_url):
    """From an application URL through Sésame's form and back; the last response."""
    response = session.get(start_url, allow_redirects=False, timeout=30)
    check(response.status_code == 302 and response.headers["location"].startswith(sesame + "/cas/login"),
          f"phpCAS sends the browser to Sésame ({response.status_code})")
    response = follow(session, response.headers["location"])
    check('name="password"' in response.text, "Sésame shows its login form")
    form = {"csrf": field(response.text, "csrf"), "flow": field(response.text, "flow"),
            "username": USER, "password": PASSWORD}
    response = session.post(sesame + "/login", data=form, allow_redirects=False, verify=False, timeout=30)
    check(response.status_code == 303 and "ticket=ST-" in response.headers.get("location", ""),
          "the form returns to the application with a ticket")
    return follow(session, response.headers["location"])


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="sesame-phpcas-")
    os.chmod(work, 0o755)
    sesame_port, apache_port = free_port(), free_port()
    sesame = f"https://127.0.0.1:{sesame_port}"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(work, "key.pem"), "-out", os.path.join(work, "cert.pem")],
                   check=True, capture_output=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SESAME_DATA_DIR": os.path.join(work, "data"),
        "SESAME_KEYS__DIR": os.path.join(work, "keys"),
        "SESAME_LOG__LEVEL": "warn",
        "SESAME_CAS__ALLOW_HTTP_SERVICES": "true",
        "SESAME_SERVER__PUBLIC_URL": sesame + "/",
        "SESAME_SERVER__TLS_CERT": os.path.join(work, "cert.pem"),
        "SESAME_SERVER__TLS_KEY": os.path.join(work, "key.pem"),
        "SESAME_MAIL__SEND_INTERVAL": "1s",
    }
    www = os.path.join(work, "www")
    for app in ("app1", "app2"):
        os.makedirs(os.path.join(www, app))
        with open(os.path.join(www, app, "index.php"), "w") as out:
            out.write(APP.format(session=app.upper(), sesame_port=sesame_port,
                                 apache_port=apache_port, app=app))
        with open(os.path.join(www, app, "bye.php"), "w") as out:
            out.write("<?php echo 'bye';\n")
        added = subprocess.run(
            [binary, "service", "add", app, "--name", app, "--url",
             f"http://127.0.0.1:{apache_port}/{app}/", "--single-logout",
             "--attribute", "mail,displayName,eduPersonAffiliation,supannEtuId"],
            env=env, cwd=work, capture_output=True, text=True)
        check(added.returncode == 0, f"sesame service add {app} --single-logout ({added.stderr.strip()})")
    for root, dirs, files in os.walk(www):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(www, 0o755)
    with open(os.path.join(work, "httpd.conf"), "w") as out:
        libphp = sorted(glob.glob("/usr/lib/apache2/modules/libphp*.so"))[-1]
        out.write(HTTPD.format(port=apache_port, work=work, libphp=libphp))

    out_log = os.path.join(work, "sesame.log")
    server = subprocess.Popen([binary, "demo", "--listen", f"127.0.0.1:{sesame_port}"], env=env, cwd=work,
                              stdout=open(out_log, "w"), stderr=subprocess.STDOUT)
    apache = subprocess.Popen(["apache2", "-f", os.path.join(work, "httpd.conf"), "-DFOREGROUND"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)  # Apache signals its process group
    try:
        check("listening on" in wait_for_banner(out_log, server), "sesame demo starts with TLS")
        app1 = f"http://127.0.0.1:{apache_port}/app1/index.php"
        app2 = f"http://127.0.0.1:{apache_port}/app2/index.php"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{apache_port}/app1/bye.php", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        browser = requests.Session()

        page = login(browser, sesame, app1)
        check(page.status_code == 200 and f"user={USER}" in page.text,
              f"phpCAS validated the ticket on p3/serviceValidate ({page.text.strip()[:60]!r})")
        check("supannEtuId=22000011" in page.text and "eduPersonAffiliation=student|member" in page.text,
              "phpCAS reads the attributes, multi-valued ones included")

        response = browser.get(app2, allow_redirects=False, timeout=30)
        page = follow(browser, response.headers["location"])
        check(page.status_code == 200 and f"user={USER}" in page.text,
              "SSO into the second application, without the password")

        # Logout from app1: phpCAS redirects to /cas/logout?service=…bye.php, a registered URL.
        response = browser.get(app1 + "?logout=1", allow_redirects=False, timeout=30)
        logout = response.headers.get("location", "")
        check(logout.startswith(sesame + "/cas/logout?service="), f"phpCAS logs out at Sésame ({logout[:60]})")
        response = browser.get(logout, allow_redirects=False, verify=False, timeout=30)
        check(response.status_code == 303
              and response.headers["location"] == f"http://127.0.0.1:{apache_port}/app1/bye.php",
              "Sésame ends the session and returns to the registered service")

        # Single logout: app2's phpCAS session is destroyed by the back-channel request.
        gone = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not gone:
            time.sleep(0.5)
            response = browser.get(app2, allow_redirects=False, timeout=30)
            gone = response.status_code == 302 and "/cas/login" in response.headers.get("location", "")
        check(gone, "single logout reached the second phpCAS application (its session is gone)")
        admin = subprocess.run([binary, "admin", "sessions", USER, "--json"], env=env, cwd=work,
                               capture_output=True, text=True)
        delivered = [l for l in json.loads(admin.stdout)["single_logouts"]
                     if l["state"] == "delivered"]
        check(len(delivered) == 2, f"sesame admin sessions shows both single logouts delivered ({len(delivered)})")
    finally:
        apache.send_signal(signal.SIGTERM)
        server.send_signal(signal.SIGTERM)
        apache.wait(timeout=30)
        server.wait(timeout=30)
    check(server.returncode == 0, "the server stops cleanly on SIGTERM")
    print(f"{e2e_support.PASSED} passed, 0 failed")


if __name__ == "__main__":
    main()
