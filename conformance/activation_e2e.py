#!/usr/bin/env python3
"""End-to-end check of activation, login, lockout and password recovery against the real binary.

An outside client, as a student would be: it uses only the documented field names, a cookie jar,
and the mails that arrive on a real SMTP server (aiosmtpd) on loopback. It checks:
  - a generated student activates through /activate with the code from the SMTP mail;
  - unknown dossier, wrong birth date and already-activated dossier get identical pages;
  - five failures lock a dossier;
  - the student logs in through /login (field names only), is recognised on a second visit (SSO),
    logs out, and the old cookie is dead;
  - wrong passwords for the real login and for a made-up one give the same pages, up to the
    temporary lock; `sesame admin show` explains the lock, `sesame admin unlock --reason` lifts it
    and `sesame admin audit` records it;
  - /healthz answers during a storm of password logins (more than the cores can hash);
  - "forgot password" answers the same for anyone and mails a reset link built from the public
    URL (a forged X-Forwarded-Host changes nothing); the link sets a new password once, and the
    sessions opened before it are gone;
  - no password, code, token or cookie value used by the run appears in the server's logs.

Usage: activation_e2e.py SESAME_BINARY GEN_PEOPLE_PY   (needs aiosmtpd importable)
Only 127.0.0.1 is contacted. Exits non-zero on the first failed check; prints "N passed, 0 failed".
"""
import csv
import email
import email.policy
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from aiosmtpd.controller import Controller

import e2e_support
from e2e_support import Browser, check, free_port, session_cookie, wait_for_banner

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


def comparable(page, typed):
    page = page.replace(typed, "IDENTIFIER")
    return re.sub(r'name="csrf" value="[^"]+"', 'name="csrf" value=""', page)


def admin(binary, env, work, *args):
    return subprocess.run([binary, "admin", *args], env=env, cwd=work, capture_output=True, text=True)


def login_checks(base, binary, env, work, login, password, secrets):
    """Issue 4's outside checks: login, SSO, logout, lockout pages, helpdesk, /healthz in a storm."""
    browser = Browser(base)
    status, _, form = browser.request("/login")
    check(status == 200 and all(f'name="{n}"' in form for n in
                                ("username", "password", "public_computer", "remember_me", "csrf")),
          "the login form has the documented fields")
    status, headers, _ = browser.form("/login", {"username": login, "password": password})
    cookie = session_cookie(browser)
    check(status == 303 and cookie is not None and "HttpOnly" in headers.get("set-cookie", ""),
          "the form logs in and sets an HttpOnly session cookie")
    secrets.append(cookie)
    status, _, page = browser.request("/login")
    check(status == 200 and "Vous êtes connecté" in page and login in page,
          "the second visit is recognised (SSO)")
    status, _, page = browser.request("/logout")
    check("/logout" in page and session_cookie(browser) == cookie, "GET /logout only asks")
    status, _, page = browser.request("/logout", {"csrf": browser.csrf(page)})
    check(status == 200 and session_cookie(browser) is None, "POST /logout ends the session")
    replay = Browser(base)
    replay.jar.set_cookie(http.cookiejar.Cookie(
        0, "sesame", cookie, None, False, "127.0.0.1", False, False, "/", True, False, None, False,
        None, None, {}))
    status, _, page = replay.request("/login")
    check('name="password"' in page and "Vous êtes connecté" not in page, "the old cookie is dead")

    # The same pages for the real login and a made-up one of the same length.
    made_up = login[:-1] + ("a" if login[-1] != "a" else "b")
    real_browser, fake_browser = Browser(base), Browser(base)
    real_pages, fake_pages = [], []
    for attempt in range(7):
        wrong = f"mauvais mot de passe {attempt}"
        secrets.append(wrong)
        real_pages.append(real_browser.form("/login", {"username": login, "password": wrong}))
        fake_pages.append(fake_browser.form("/login", {"username": made_up, "password": wrong}))
    same = all(r[0] == f[0] and comparable(r[2], login) == comparable(f[2], made_up)
               for r, f in zip(real_pages, fake_pages))
    check(same, "a real and a made-up identifier get the same sequence of pages")
    check("incorrect" in real_pages[0][2] and "verrouillé" in real_pages[4][2]
          and "réessayez dans 1 min" in real_pages[6][2],
          "the fifth failure locks for a minute, and the page says so")
    status, _, page = Browser(base).form("/login", {"username": login, "password": password})
    check(status == 200 and "verrouillé" in page, "even the right password waits for the lock")

    shown = admin(binary, env, work, "show", login)
    check(shown.returncode == 0 and "TEMPORARY" in shown.stdout and "5 consecutive" in shown.stdout,
          "sesame admin show explains the lock")
    shown = admin(binary, env, work, "show", login, "--json")
    report = json.loads(shown.stdout)
    check(report["lock"]["state"] == "temporary" and report["lock"]["failures"] == 5
          and report["contacts"] and "*" in report["contacts"][0]["value"],
          "sesame admin show --json: lock, failures, masked contacts")
    unknown = admin(binary, env, work, "show", "nobody.at.all")
    check(unknown.returncode != 0 and "no account" in unknown.stderr, "an unknown login is a clear error")
    no_reason = admin(binary, env, work, "unlock", login)
    check(no_reason.returncode != 0 and "--reason" in no_reason.stderr, "unlock needs --reason")
    unlocked = admin(binary, env, work, "unlock", login, "--reason", "e2e: appel au guichet")
    check(unlocked.returncode == 0 and "unlocked" in unlocked.stdout, "sesame admin unlock lifts the lock")
    status, _, _ = Browser(base).form("/login", {"username": login, "password": password})
    check(status == 303, "the right password works again at once")
    audit = admin(binary, env, work, "audit", "--login", login, "--since", "1h", "--json")
    events = json.loads(audit.stdout) if audit.returncode == 0 else []
    unlock_events = [e for e in events if e["action"] == "login.unlocked"]
    check(unlock_events and unlock_events[0]["details"]["reason"] == "e2e: appel au guichet"
          and unlock_events[0]["actor"].startswith("operator:"),
          "sesame admin audit shows the unlock, who ran it and why")
    check(any(e["action"] == "login.failed" and e["source"] == "127.0.0.1" and e["request_id"]
              for e in events), "failed logins are audited with address and request id")

    # A storm of password logins (distinct made-up identifiers: no lock stops them early).
    stop = threading.Event()
    def storm(worker):
        n = 0
        while not stop.is_set():
            Browser(base).form("/login", {"username": f"storm{worker}.n{n}", "password": "x" * 16})
            n += 1
    threads = [threading.Thread(target=storm, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    timings, failures = [], 0
    for _ in range(40):
        started = time.monotonic()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                failures += response.status != 200
        except Exception:
            failures += 1
        timings.append(time.monotonic() - started)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    timings.sort()
    check(failures == 0, f"/healthz answered every probe during a login storm "
                         f"(median {timings[len(timings) // 2] * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms)")


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
        "SESAME_LOG__LEVEL": "info",
        # The storm below comes from one address; the per-identifier lockout still applies.
        "SESAME_LIMITS__PER_ADDRESS_PER_MINUTE": "100000",
        "SESAME_LIMITS__GLOBAL_PER_SECOND": "100000",
    }
    students = os.path.join(work, "students.csv")
    with open(students, "w") as out:
        subprocess.run([sys.executable, generator, "students", "200", "--seed", "11"], stdout=out, check=True)
    imported = subprocess.run([binary, "import", "students", students], env=env, cwd=work,
                              capture_output=True, text=True)
    check(imported.returncode == 0 and "created" in imported.stdout, "the registrar export imports")
    rows = list(csv.DictReader(open(students)))
    student, other = rows[3], rows[4]

    out_log, err_log = os.path.join(work, "stdout.log"), os.path.join(work, "stderr.log")
    secrets = []  # every secret this run uses: none may appear in the logs
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{http_port}"], env=env, cwd=work,
                              stdout=open(out_log, "w"), stderr=open(err_log, "w"), text=True)
    try:
        banner = wait_for_banner(out_log, server)
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
        secrets.append(code)
        status, headers, _ = browser.form("/activate/code", {"code": code})
        check(status == 303 and headers.get("location") == "/activate/password", "step 3 accepts the code")
        password = "cheval agrafe pile correcte"
        status, _, page = browser.form("/activate/password", {
            "new_password": password, "new_password_confirm": password})
        identifier = re.search(r'id="identifier">([^<]+)<', page)
        check(status == 200 and identifier is not None and identifier.group(1).endswith("@etu.uca.fr"),
              f"the new identifier is shown ({identifier.group(1) if identifier else '?'})")
        login = identifier.group(1).split("@")[0]
        secrets.append(password)
        login_checks(base, binary, env, work, login, password, secrets)
        # A session opened before the reset below, which must end it.
        before_reset = Browser(base)
        status, _, _ = before_reset.form("/login", {"username": login, "password": password})
        check(status == 303, "a session is open before the password reset")

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
        secrets.extend([token, new_password])
        status, _, page = reset.request("/password/reset", {
            "csrf": reset.csrf(page), "token": token,
            "new_password": new_password, "new_password_confirm": new_password})
        check(status == 200 and "new_password" not in page, "the link sets a new password")
        notices = inbox.wait_for(personal, 3)
        check(len(notices) == 3, "the contacts are told that the password changed")
        status, _, page = reset.request(path)
        check('name="new_password"' not in page, "the link works only once")
        status, _, page = before_reset.request("/login")
        check('name="password"' in page, "the sessions opened before the reset are gone")
        status, headers, _ = Browser(base).form("/login", {"username": login, "password": new_password})
        check(status == 303, "the new password logs in")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        controller.stop()
    check(server.returncode == 0, "the server stops cleanly on SIGTERM")
    logs = open(out_log).read() + open(err_log).read()
    check("request" in logs and len(logs) > 1000, f"the server logged the run ({len(logs)} bytes)")
    leaked = [s for s in secrets if s and s in logs]
    check(not leaked and len(secrets) >= 8,
          f"none of the {len(secrets)} passwords, codes, tokens and cookies appears in the logs")
    print(f"{e2e_support.PASSED} passed, 0 failed")


if __name__ == "__main__":
    main()
