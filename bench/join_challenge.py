#!/usr/bin/env python3
"""What a waiting room's join challenge costs a person's browser and a bot farm (docs/performance.md
"Join challenge").

    .venv/bin/python bench/join_challenge.py [--difficulties 1000,2000,5000,10000,20000,50000] [--samples 5]

For each difficulty, challenges made as the API makes them (sales.join_challenge.new_challenge) are
solved:
- in headless Chromium (Debian's, through Playwright) by the page's own script and worker
  (sales/static/sales/join_challenge.js, join_challenge_worker.js), served from 127.0.0.1 (a secure
  context, as crypto.subtle needs), with one worker and with the script's default count;
- natively, as a bot would: OpenSSL's PBKDF2 through Python's hashlib, one core, tries per second.
Prints the browser's median and slowest solve, the native cost of one join, and what a farm pays for
N accounts in CPU-hours at that rate. Also the server's own cost: issuing and checking a challenge.
Needs no database (Django is set up only for the settings that sign challenges).
"""

import argparse
import functools
import hashlib
import http.server
import os
import statistics
import sys
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")

import altcha  # noqa: E402
import django  # noqa: E402

django.setup()

from sales import join_challenge  # noqa: E402

STATIC_DIR = PROJECT_DIR / "sales" / "static"
CHROMIUM = "/usr/bin/chromium"
PAGE = "<!doctype html><title>join challenge bench</title><script src='/sales/join_challenge.js'></script>"
# A person on a recent phone or laptop should not wait longer than this for the line (the target the
# recommended difficulty is picked against).
PERSON_TARGET_SECONDS = 2.0
FARM_ACCOUNTS = (1_000, 10_000, 100_000)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--difficulties", default="1000,2000,5000,10000,20000,50000")
    parser.add_argument("--samples", type=int, default=5, help="challenges solved per difficulty in the browser")
    parser.add_argument(
        "--native-seconds", type=float, default=2.0, help="how long to time the native loop after each difficulty"
    )
    return parser.parse_args()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/":
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def challenge(difficulty: int) -> dict:
    issued = join_challenge.new_challenge(difficulty=difficulty, sale_id=1, user_id=1)
    assert issued.challenge is not None
    return issued.challenge


def browser_solves(page, difficulty: int, samples: int, workers: int | None) -> list[tuple[float, int]]:
    """(seconds, tries) of each solve, each checked by the server's own verification."""
    results = []
    for _ in range(samples):
        issued = challenge(difficulty)
        found = page.evaluate(
            """async ([challenge, workers]) => {
                 const started = performance.now();
                 const found = await window.flashsaleJoinChallenge.solve(challenge, workers ? {workers} : undefined);
                 return {...found, seconds: (performance.now() - started) / 1000};
               }""",
            [issued, workers],
        )
        payload = altcha.Payload(
            altcha.Challenge.from_dict(issued), altcha.Solution(found["counter"], found["derivedKey"])
        )
        assert altcha.verify_solution(
            payload, join_challenge._secret("challenge"), hmac_key_secret=join_challenge._secret("derived-key")
        ).verified, "the server refused the browser's solution"
        results.append((found["seconds"], found["counter"] + 1))
    return results


def native_tries_per_second(seconds: float) -> float:
    salt, password = os.urandom(16), bytearray(os.urandom(20))
    tries, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        password[16:20] = tries.to_bytes(4, "big")
        hashlib.pbkdf2_hmac("sha256", bytes(password), salt, join_challenge.PBKDF2_ITERATIONS, 32)
        tries += 1
    return tries / (time.perf_counter() - started)


def server_costs(rounds: int = 200) -> tuple[float, float]:
    """Microseconds to issue one challenge and to check one solution (the fast path, one HMAC)."""
    started = time.perf_counter()
    issued = [challenge(1000) for _ in range(rounds)]
    issue_us = (time.perf_counter() - started) / rounds * 1e6
    solved = [altcha.solve_challenge(altcha.Challenge.from_dict(c)) for c in issued[:20]]
    payloads = [altcha.Payload(altcha.Challenge.from_dict(c), s) for c, s in zip(issued[:20], solved, strict=True) if s]
    started = time.perf_counter()
    for payload in payloads * (rounds // len(payloads)):
        altcha.verify_solution(
            payload, join_challenge._secret("challenge"), hmac_key_secret=join_challenge._secret("derived-key")
        )
    check_us = (time.perf_counter() - started) / (len(payloads) * (rounds // len(payloads))) * 1e6
    return issue_us, check_us


def main():
    from playwright.sync_api import sync_playwright

    args = parse_args()
    difficulties = [int(d) for d in args.difficulties.split(",")]
    handler = functools.partial(_Handler, directory=str(STATIC_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    issue_us, check_us = server_costs()
    print(f"# join challenge: {join_challenge.ALGORITHM}, {join_challenge.PBKDF2_ITERATIONS} iterations a try")
    print(f"cores: {os.cpu_count()}; load average at the start: {os.getloadavg()[0]:.1f}")
    print(f"server: issue {issue_us:,.0f} µs a challenge, check {check_us:,.1f} µs a solution")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.wait_for_function("() => window.flashsaleJoinChallenge !== undefined")
            browser_solves(page, 50, 2, workers=None)  # warm-up: the first workers' start and compile
            default_workers = page.evaluate("() => Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4))")
            header = (
                f"{'difficulty':>10} | {'browser 1 worker: median / slowest s':>37} | {'tries/s':>8} | "
                f"{f'browser {default_workers} workers: median s':>27} | "
                f"{'native tries/s':>14} | {'native s/join':>13} | "
                + " | ".join(f"{n:,} accounts CPU-h" for n in FARM_ACCOUNTS)
                + " | person target"
            )
            print(header)
            recommended = None
            for difficulty in difficulties:
                single = browser_solves(page, difficulty, args.samples, workers=1)
                several = browser_solves(page, difficulty, args.samples, workers=None)
                seconds = [s for s, _ in single]
                rate = sum(t for _, t in single) / sum(seconds)
                median = statistics.median(seconds)
                # Timed right after the browser's solves, so both see the same load on a shared machine.
                native = native_tries_per_second(args.native_seconds)
                per_join = difficulty / native
                meets = median <= PERSON_TARGET_SECONDS
                if meets:
                    recommended = difficulty
                print(
                    f"{difficulty:>10,} | {median:>17.2f} / {max(seconds):>17.2f} | {rate:>8,.0f} | "
                    f"{statistics.median(s for s, _ in several):>27.2f} | {native:>14,.0f} | {per_join:>13.3f} | "
                    + " | ".join(f"{n * per_join / 3600:>{len(f'{n:,} accounts CPU-h')},.2f}" for n in FARM_ACCOUNTS)
                    + f" | {'met' if meets else 'over'} (median <= {PERSON_TARGET_SECONDS} s on 1 worker)"
                )
            browser.close()
    finally:
        server.shutdown()
    print(f"hardest difficulty meeting the person target here: {recommended}")


if __name__ == "__main__":
    main()
