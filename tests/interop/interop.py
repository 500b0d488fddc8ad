"""Shared helpers for the interoperability scripts.

Each script is one scenario run by tests/tests/interop/main.rs against a fresh Starling
node: `SCRIPT --host 127.0.0.1 --port PORT --domain localhost`. Accounts are created by the
Rust test; every account's password is its name followed by `-pw`.

A scenario is an async function that raises `Failure` (or any exception) with a message
saying what went wrong; `main` runs it under an overall time limit and turns the outcome
into the exit code (0: passed, 1: failed) with one clear line on stderr.
"""

import argparse
import asyncio
import datetime as dt
import inspect
import logging
import ssl
import sys
import time
import traceback

try:
    import slixmpp
except ImportError:  # The Rust test checks this first; this is for running by hand.
    sys.exit("FAIL: slixmpp is missing: install the Debian package python3-slixmpp "
             "and run this with /usr/bin/python3")

#: Bound for one expected event (a login, a message, a roster push).
STEP_TIMEOUT = 10.0
#: Bound for a whole scenario.
SCENARIO_TIMEOUT = 50.0


class Failure(Exception):
    """A scenario check failed; the message says which and what was seen instead."""


def password(user):
    return f"{user}-pw"


def parse_args(extra=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", default="localhost")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the XML")
    if extra:
        extra(parser)
    return parser.parse_args()


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Session:
    """One slixmpp client with the events the scenarios look at."""

    def __init__(self, args, user, resource, mechanism=None, plugins=(), secret=None):
        self.args = args
        self.user = user
        self.bare = f"{user}@{args.domain}"
        self.xmpp = slixmpp.ClientXMPP(
            f"{self.bare}/{resource}",
            secret if secret is not None else password(user),
            sasl_mech=mechanism,
        )
        # The node's certificate is self-signed for the test.
        self.xmpp.ssl_context.check_hostname = False
        self.xmpp.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ("xep_0199",) + tuple(plugins):
            self.xmpp.register_plugin(plugin)
        self.messages = asyncio.Queue()
        self.tls = False
        self.auth_failure = None
        self.closed = asyncio.Event()
        self.xmpp.add_event_handler("tls_success", self._on_tls)
        self.xmpp.add_event_handler("failed_auth", self._on_failed_auth)
        self.xmpp.add_event_handler("message", self.messages.put_nowait)
        self.xmpp.add_event_handler("disconnected", lambda _: self.closed.set())

    def _on_tls(self, _event):
        self.tls = True

    def _on_failed_auth(self, failure):
        self.auth_failure = failure["condition"] or "failure"

    async def start(self, presence=True):
        """Connects over STARTTLS, authenticates, binds; sends initial presence if asked."""
        started = asyncio.get_running_loop().create_future()

        def done(outcome):
            if not started.done():
                started.set_result(outcome)

        self.xmpp.add_event_handler("session_start", lambda _: done("session"))
        self.xmpp.add_event_handler("failed_all_auth", lambda _: done("auth failed"))
        self.xmpp.add_event_handler("disconnected", lambda _: done("disconnected"))
        self.xmpp.add_event_handler("connection_failed", lambda e: done(f"connection failed: {e}"))
        connect_starttls(self.xmpp, self.args.host, self.args.port)
        try:
            outcome = await asyncio.wait_for(started, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure(f"{self.bare}: no session within {STEP_TIMEOUT} s") from None
        if outcome != "session":
            detail = f" (SASL <{self.auth_failure}/>)" if self.auth_failure else ""
            raise Failure(f"{self.bare}: {outcome}{detail}")
        if not self.tls:
            raise Failure(f"{self.bare}: the session started without STARTTLS")
        if presence:
            self.xmpp.send_presence()
        return self

    @property
    def jid(self):
        return str(self.xmpp.boundjid)

    async def next_message(self, what, predicate=lambda m: True):
        """The next message matching `predicate` (others are skipped, and reported)."""
        skipped = []
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(self.messages.get(), max(left, 0))
            except asyncio.TimeoutError:
                raise Failure(f"{self.bare}: no {what} within {STEP_TIMEOUT} s; "
                              f"other messages: {skipped}") from None
            if predicate(message):
                return message
            skipped.append(str(message))

    async def stop(self):
        """Closes the stream and waits for the connection to end."""
        if self.closed.is_set():
            return
        self.xmpp.disconnect()
        try:
            await asyncio.wait_for(self.closed.wait(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure(f"{self.bare}: the stream did not close") from None


def connect_starttls(xmpp, host, port):
    """Connects `xmpp` to host:port over STARTTLS. Debian's slixmpp (1.8) takes an
    address and flags; PyPI's (1.10 and later) takes host and port and reads which
    kinds of connection to try from attributes."""
    if "address" in inspect.signature(xmpp.connect).parameters:
        xmpp.connect((host, port), force_starttls=True)
    else:
        xmpp.enable_direct_tls = False
        xmpp.enable_plaintext = False
        xmpp.enable_starttls = True
        xmpp.connect(host, port)


async def stored_roster(session):
    """The roster as the server stores it, fetched afresh: asked with an empty
    version (XEP-0237), since to the client's current one the server rightly
    answers with nothing."""
    session.xmpp.client_roster.version = ""
    result = await session.xmpp.get_roster(timeout=STEP_TIMEOUT)
    return {str(jid): dict(item) for jid, item in result["roster"]["items"].items()}


async def until(what, condition, timeout=STEP_TIMEOUT, describe=lambda: ""):
    """Polls `condition` until it holds; fails with `what` and the current state."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Failure(f"{what} not reached within {timeout} s; {describe()}")
        await asyncio.sleep(0.05)


def utc_now():
    return dt.datetime.now(dt.timezone.utc)


def check(condition, message):
    if not condition:
        raise Failure(message)


def main(scenario, extra_args=None):
    """Runs `scenario(args)` and exits 0 if it passed, 1 with a clear message if not."""
    args = parse_args(extra_args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    name = sys.argv[0].rsplit("/", 1)[-1]
    started = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(scenario(args), SCENARIO_TIMEOUT))
    except asyncio.TimeoutError:
        print(f"FAIL {name}: did not finish within {SCENARIO_TIMEOUT} s", file=sys.stderr)
        sys.exit(1)
    except Failure as failure:
        print(f"FAIL {name}: {failure}", file=sys.stderr)
        sys.exit(1)
    except Exception:  # An unexpected error is a failure too, with its traceback.
        traceback.print_exc()
        print(f"FAIL {name}: unexpected error (traceback above)", file=sys.stderr)
        sys.exit(1)
    log(f"PASS {name} in {time.monotonic() - started:.1f} s")
