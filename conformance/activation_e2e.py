#!/usr/bin/env python3
"""End-to-end check of activation and password recovery against the real `sesame` binary.

An outside client, as a student would be: it uses only the documented field names, a cookie jar,
and the mails that arrive on a real SMTP server (aiosmtpd) on loopback. It checks:
  - a generated student activates through /activate with the code from the SMTP mail;
  - unknown dossier, wrong birth date and already-activated dossier get identical pages;
  - five failures lock a dossier;
  - "forgot password" answers the same for anyone and mails a reset link built from the public
    URL (a forged X-Forwarded-Host changes nothing); the link sets a new password once.

Usage: activation_e2e.py SESAME_BINARY GEN_PEOPLE_PY   (needs aiosmtpd importable)
Only 127.0.0.1 is contacted. Exits non-zero on the first failed check; prints "N passed, 0 failed".
"""
import csv
import email
import email.policy
import http.cookiejar
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from aiosmtpd.controller import Controller

PASSED = 0


def check(condition, what):
    global PASSED
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        print(f"{PASSED} passed, 1 failed")
        sys.exit(1)
    PASSED += 1
    print(f"ok - {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """Keeps every message the SMTP server receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, message))
        return "250 OK"

    def wait_for(self, recipient, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for rcpts, m in self.messages if recipient in rcpts]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return [m for rcpts, m in self.messages if recipient in rcpts]


def text_of(message):
    part = message.get_body(preferencelist=("plain",))
    return part.get_content()


class Browser:
    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def request(self, path, fields=None, headers=None):
        data = urllib.parse.urlencode(fields).encode() if fields is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, lower(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, lower(error.headers), error.read().decode()

    def csrf(self, body):
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        return match.group(1) if match else ""

    def form(self, path, fields, headers=None):
        status, _, page = self.request(path)
        fields = dict(fields, csrf=self.csrf(page))
        return self.request(path, fields, headers)


def lower(headers):
    return {key.lower(): value for key, value in headers.items()}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main():
    binary, generator = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    work = tempfile.mkdtemp(prefix="sesame-e2e-")
    inbox = Inbox()
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SESAME_DATA_DIR": os.path.join(work, "data"),
        "SESAME_KEYS__DIR": os.path.join(work, "keys"),
        "SESAME_MAIL__SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?tls=none",
        "SESAME_MAIL__FROM": "Sésame <sesame@uca.fr>",
        "SESAME_LOG__LEVEL": "warn",
    }
    students = os.path.join(work, "students.csv")
    with open(students, "w") as out:
        subprocess.run([sys.executable, generator, "students", "200", "--seed", "11"], stdout=out, check=True)
    imported = subprocess.run([binary, "import", "students", students], env=env, cwd=work,
                              capture_output=True, text=True)
    check(imported.returncode == 0 and "created" in imported.stdout, "the registrar export imports")
    rows = list(csv.DictReader(open(students)))
    student, other = rows[3], rows[4]

    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{http_port}"], env=env, cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline()
        check("listening on" in banner, f"the server starts ({banner.strip()})")

        # Activation, with only the documented field names.
        browser = Browser(base)
        status, headers, _ = browser.form("/activate", {
            "dossier_number": student["dossier_number"], "birth_date": student["birth_date"]})
        check(status == 303 and headers.get("location") == "/activate/contact",
              f"step 1 accepts the dossier pair (got {status} {headers.get('location')})")
        personal = "student.e2e@example.org"
        status, headers, _ = browser.form("/activate/contact", {"email": personal, "phone": "06 12 34 56 78"})
        check(status == 303, "step 2 accepts a personal address and a mobile")
        mails = inbox.wait_for(personal, 1)
        check(len(mails) == 1, "the code arrives on the SMTP server")
        code = re.search(r"\b(\d{6})\b", text_of(mails[0])).group(1)
        status, headers, _ = browser.form("/activate/code", {"code": code})
        check(status == 303 and headers.get("location") == "/activate/password", "step 3 accepts the code")
        password = "cheval agrafe pile correcte"
        status, _, page = browser.form("/activate/password", {
            "new_password": password, "new_password_confirm": password})
        identifier = re.search(r'id="identifier">([^<]+)<', page)
        check(status == 200 and identifier is not None and identifier.group(1).endswith("@etu.uca.fr"),
              f"the new identifier is shown ({identifier.group(1) if identifier else '?'})")
        login = identifier.group(1).split("@")[0]

        # Identical answers (one browser session, so the CSRF field is the same too).
        answers = []
        prober = Browser(base)
        for dossier, birth in [("99999998", "2004-01-01"),
                               (other["dossier_number"], "1990-01-01"),
                               (student["dossier_number"], student["birth_date"])]:
            status, _, page = prober.form("/activate", {"dossier_number": dossier, "birth_date": birth})
            answers.append((status, page))
        check(answers[0] == answers[1] == answers[2],
              "unknown dossier, wrong birth date and already activated get identical pages")

        # Lock after five failures.
        locker = Browser(base)
        for _ in range(5):
            status, _, page = locker.form("/activate", {"dossier_number": other["dossier_number"], "birth_date": "1990-01-01"})
        status, _, page = locker.form("/activate", {"dossier_number": other["dossier_number"], "birth_date": other["birth_date"]})
        check(status == 200 and ("Trop d'essais" in page or "Trop d&#39;essais" in page),
              "five failures lock the dossier, even for the right pair")

        # Forgotten password.
        pages = []
        asker = Browser(base)
        for identifier_typed in [login, "nobody.there"]:
            status, _, page = asker.form("/password/forgot", {"identifier": identifier_typed},
                                         headers={"X-Forwarded-Host": "evil.example"})
            pages.append((status, page))
        check(pages[0] == pages[1], "the forgot page is the same for a real and an unknown identifier")
        mails = inbox.wait_for(personal, 2)
        check(len(mails) == 2, "the reset link arrives on the SMTP server")
        link = re.search(r"(http://\S+/password/reset\?token=\S+)", text_of(mails[1])).group(1)
        check(link.startswith(base + "/password/reset?token=") and "evil" not in link,
              "the link is built from the configured public URL")
        path = link[len(base):]
        reset = Browser(base)
        new_password = "lampe verte au fond du jardin"
        status, _, page = reset.request(path)
        token = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["token"][0]
        status, _, page = reset.request("/password/reset", {
            "csrf": reset.csrf(page), "token": token,
            "new_password": new_password, "new_password_confirm": new_password})
        check(status == 200 and "new_password" not in page, "the link sets a new password")
        notices = inbox.wait_for(personal, 3)
        check(len(notices) == 3, "the contacts are told that the password changed")
        status, _, page = reset.request(path)
        check('name="new_password"' not in page, "the link works only once")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        controller.stop()
    check(server.returncode == 0, "the server stops cleanly on SIGTERM")
    print(f"{PASSED} passed, 0 failed")


if __name__ == "__main__":
    main()
