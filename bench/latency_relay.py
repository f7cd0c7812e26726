"""A TCP relay that delays every byte by a fixed time each way: round-trip time where the
kernel has no ``sch_netem`` (``tc qdisc … netem`` answers "Specified qdisc kind is
unknown").

Run as its own process (``python bench/latency_relay.py LISTEN_PORT TARGET_PORT DELAY_MS
[HOST]``; it prints "ready" once listening on HOST, 127.0.0.1 by default, and connects to
TARGET_PORT on the same HOST). ``bench/wire.py`` runs it inside the network namespace it
creates, on the namespace's side of the veth pair, never on the shared loopback. Each chunk
read from one side is written to the other ``DELAY_MS`` after it arrived, in order: a link of
fixed latency and ample bandwidth. Unlike netem it terminates TCP, so the sender's
congestion window and ACK pace are those of an undelayed link; what it reproduces is what
PIPELINING saves, the wait for each reply.
No project imports: it starts fast and shares nothing with the clients it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await chunks.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    forwarding = asyncio.create_task(forward())
    try:
        while True:
            data = await reader.read(65536)
            chunks.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await forwarding
    except (ConnectionError, OSError):
        # One side broke: the other direction ends too, nothing waits on a dead socket.
        forwarding.cancel()
        writer.close()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# asyncio keeps only weak references to the tasks serving connections.
_serving: set[asyncio.Task[None]] = set()


async def _serve(host: str, listen_port: int, target_port: int, delay: float) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            _serving.add(task)
            task.add_done_callback(_serving.discard)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            writer.close()
            return
        _nodelay(writer)
        _nodelay(upstream_writer)
        await asyncio.gather(
            _pump(reader, upstream_writer, delay),
            _pump(upstream_reader, writer, delay),
            return_exceptions=True,
        )
        for side in (writer, upstream_writer):
            side.close()

    server = await asyncio.start_server(relay, host, listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    asyncio.run(_serve(host, listen, target, delay_ms / 1000))
