"""Shared helpers of the end-to-end scripts: checks, free ports, a cookie-keeping HTTP client
that does not follow redirects, and the first banner of a starting server."""
import http.cookiejar
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

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
        return field(body, "csrf")

    def form(self, path, fields, headers=None):
        status, _, page = self.request(path)
        fields = dict(fields, csrf=self.csrf(page))
        return self.request(path, fields, headers)


def lower(headers):
    return {key.lower(): value for key, value in headers.items()}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None




def field(page, name):
    """The value of the hidden (or filled) form field `name` of a page, or ""."""
    match = re.search(r'name="' + re.escape(name) + r'" value="([^"]*)"', page)
    return match.group(1) if match else ""


def session_cookie(browser):
    return next((c.value for c in browser.jar if c.name == "sesame"), None)


def wait_for_banner(log_path, server, timeout=60):
    """Waits for the `listening on` line of a server writing its stdout to `log_path`."""
    banner = ""
    deadline = time.monotonic() + timeout
    while "listening on" not in banner and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.05)
        banner = open(log_path).read()
    return banner
