"""What Convo adds to a streamed answer, measured against the same upstream reached directly.

One run starts the fake OpenAI-compatible upstream and a `convo serve` (SQLite, embedded mode) as
separate processes, then for each N opens N concurrent streams twice: straight to the upstream, and
through Convo (`POST /api/threads/{id}/messages`, one thread per stream). A small asyncio HTTP/1.1
client in this process reads the raw bytes, so the load generator itself stays cheap.

Prints, per N: time to first token (p50/p99) and what Convo adds to it, inter-token gap p99 and what
Convo adds, errors, delivered tokens/s both ways, and the Convo server's CPU seconds and peak RSS.

    .venv/bin/python bench/stream_overhead.py [--n 1 100 1000] [--tokens 200] [--interval 0.01] [--first 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.upstream import free_port  # noqa: E402


@dataclass
class Result:
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None


async def _read_headers(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers


async def _chunks(reader: asyncio.StreamReader, headers: dict[str, str]):
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    else:
        while data := await reader.read(65536):
            yield data


async def stream(host: str, port: int, path: str, body: dict, headers: dict[str, str], is_token) -> Result:
    """POST and read an SSE body, timing each token event from the moment the request is sent."""
    result = Result()
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nAccept: text/event-stream\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "Connection: close\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        started = time.perf_counter()
        writer.write(head + payload)
        status, response_headers = await _read_headers(reader)
        if status != 200:
            result.error = f"HTTP {status}"
            writer.close()
            return result
        buffer = b""
        last = None
        async for chunk in _chunks(reader, response_headers):
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            now = time.perf_counter()
            for event in events:
                kind = is_token(event)
                if kind == "token":
                    result.tokens += 1
                    if last is None:
                        result.ttft = now - started
                    else:
                        result.gaps.append(now - last)
                    last = now
                elif kind == "error":
                    result.error = event.decode(errors="replace")[-200:]
        writer.close()
    except Exception as exc:  # a refused or reset connection counts as an error of that stream
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def direct_token(event: bytes) -> str | None:
    return "token" if b'"content": "' in event and b'"content": ""' not in event else None


def convo_token(event: bytes) -> str | None:
    if b"event: delta" in event:
        return "token"
    if b"event: error" in event:
        return "error"
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak_rss = max(self.peak_rss, self.rss_mb())
            await asyncio.sleep(0.1)


async def run_phase(n: int, make) -> tuple[list[Result], float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(make(i) for i in range(n)))
    return list(results), time.perf_counter() - started


def summarize(results: list[Result], wall: float) -> dict:
    ok = [r for r in results if r.error is None and r.ttft is not None]
    gaps = [g for r in ok for g in r.gaps]
    return {
        "ttft_p50": pct([r.ttft for r in ok], 0.5),
        "ttft_p99": pct([r.ttft for r in ok], 0.99),
        "gap_p99": pct(gaps, 0.99),
        "errors": len(results) - len(ok),
        "tokens_per_s": sum(r.tokens for r in results) / wall,
    }


def wait_ready(url_host: str, port: int, path: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{url_host}:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{port}{path} not ready")


async def main_async(args: argparse.Namespace) -> None:
    import httpx

    host = "127.0.0.1"
    work = Path(tempfile.mkdtemp(prefix="convo-bench-"))
    fake_port, convo_port = free_port(), free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", str(fake_port), "--tokens", str(args.tokens),
         "--interval", str(args.interval), "--first", str(args.first)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    providers = work / "providers.yaml"
    providers.write_text(
        f"providers:\n  - name: fake\n    type: openai\n    base_url: http://{host}:{fake_port}/v1\n"
        f"    api_key: sk-bench\n    models:\n      - id: fake-gpt\n        context_window: 8192\n"
    )
    env = {**os.environ, "CONVO_DATA_DIR": str(work / "data"), "CONVO_PROVIDERS_FILE": str(providers),
           "CONVO_LOG_LEVEL": "warning",
           # One bench user runs every stream: lift the per-user limit of answers at once.
           "CONVO_USER_MAX_ANSWERS": "0"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    convo = subprocess.Popen(
        [sys.executable, "-m", "convo.cli", "serve", "--port", str(convo_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(host, fake_port, "/v1/models")
        wait_ready(host, convo_port, "/readyz")
        base = f"http://{host}:{convo_port}"
        signup = httpx.post(base + "/api/auth/signup", json={"email": "bench@example.com", "password": "benchmark"})
        token = signup.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        proc = Proc(convo.pid)
        rows = []
        print(f"upstream: {args.tokens} tokens per answer, first after {args.first * 1000:.0f} ms, then every "
              f"{args.interval * 1000:.0f} ms; Convo on SQLite, one process; {os.cpu_count()} cores shared by all")
        for n in args.n:
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as client:
                threads = []
                for start in range(0, n, 100):
                    batch = await asyncio.gather(*(client.post("/api/threads", json={"model": "fake-gpt"})
                                                   for _ in range(start, min(n, start + 100))))
                    threads += [r.json()["id"] for r in batch]
            body = {"model": "fake-gpt", "stream": True, "messages": [{"role": "user", "content": "hello"}],
                    "stream_options": {"include_usage": True}}
            direct, direct_wall = await run_phase(
                n, lambda i, body=body: stream(host, fake_port, "/v1/chat/completions", body, {}, direct_token))
            cpu_before = proc.cpu_seconds()
            stop = asyncio.Event()
            watcher = asyncio.create_task(proc.watch(stop))
            via, via_wall = await run_phase(
                n, lambda i, threads=threads: stream(host, convo_port, f"/api/threads/{threads[i]}/messages",
                                                    {"content": "hello"},
                                    auth, convo_token))
            stop.set()
            await watcher
            cpu = proc.cpu_seconds() - cpu_before
            d, c = summarize(direct, direct_wall), summarize(via, via_wall)
            rows.append((n, d, c, cpu, proc.peak_rss))
            errors = [r.error for r in via if r.error][:3]
            if errors:
                print(f"  N={n}: sample errors: {errors}")
        print()
        print("| streams | TTFT p50 direct → Convo (added) | TTFT p99 direct → Convo (added) | inter-token p99 "
              "direct → Convo (added) | errors | tokens/s Convo (direct) | Convo CPU s | Convo peak RSS |")
        print("|---|---|---|---|---|---|---|---|")
        for n, d, c, cpu, rss in rows:
            ms = 1000
            print(
                f"| {n} | {d['ttft_p50']*ms:.1f} → {c['ttft_p50']*ms:.1f} ms (+{(c['ttft_p50']-d['ttft_p50'])*ms:.1f}) "
                f"| {d['ttft_p99']*ms:.1f} → {c['ttft_p99']*ms:.1f} ms (+{(c['ttft_p99']-d['ttft_p99'])*ms:.1f}) "
                f"| {d['gap_p99']*ms:.1f} → {c['gap_p99']*ms:.1f} ms (+{(c['gap_p99']-d['gap_p99'])*ms:.1f}) "
                f"| {c['errors']} (direct {d['errors']}) | {c['tokens_per_s']:.0f} ({d['tokens_per_s']:.0f}) "
                f"| {cpu:.1f} | {rss:.0f} MB |"
            )
    finally:
        convo.terminate()
        fake.terminate()
        convo.wait(20)
        fake.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--first", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
