"""A Python `websockets` client that misbehaves on cue, for tests/peers.rs.

    python peer.py URL SCENARIO [ARG]

Prints one line `result k=v ...` before exiting (what it saw: close code, echoes), or is
killed by the test. Where `websockets` refuses to do something wrong (invalid close codes,
oversized or non-UTF-8 reasons) the frame is written by hand through its transport.
"""
import asyncio
import os
import socket
import struct
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def close_frame(payload):
    """A masked, FIN Close frame carrying `payload` (any bytes, any length)."""
    head = bytearray([0x88])
    n = len(payload)
    if n <= 125:
        head.append(0x80 | n)
    else:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_code(ws):
    rcvd = ws.protocol.close_rcvd
    return rcvd.code if rcvd is not None else "none"


async def wait_end(ws, limit=10):
    try:
        await asyncio.wait_for(ws.wait_closed(), limit)
    except asyncio.TimeoutError:
        pass


async def drain(ws):
    n = 0
    try:
        async for _ in ws:
            n += 1
    except ConnectionClosed:
        pass
    return n


async def main(url, scenario, arg):
    async with connect(url, max_size=None, close_timeout=10, ping_interval=None) as ws:
        if scenario == "close-no-answer":
            # Ask the server to close, then stop reading: its Close is never answered.
            await ws.send("!close")
            ws.transport.pause_reading()
            await asyncio.sleep(30)
        elif scenario == "close-then-silent":
            # Send our Close, then stop reading and never close the TCP connection.
            ws.transport.write(close_frame(struct.pack("!H", 1000) + b"bye"))
            ws.transport.pause_reading()
            await asyncio.sleep(30)
        elif scenario in ("reset", "eof"):
            await ws.send("ping")
            await ws.recv()
            if scenario == "reset":
                sock = ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ws.transport.abort()
                print("result reset=1", flush=True)
                return
            ws.transport.write_eof()
            await wait_end(ws)
        elif scenario == "close-code":
            ws.transport.write(close_frame(struct.pack("!H", int(arg))))
            await wait_end(ws)
        elif scenario == "reason-124":
            ws.transport.write(close_frame(struct.pack("!H", 1000) + b"r" * 124))
            await wait_end(ws)
        elif scenario == "reason-123":
            await ws.close(1000, "r" * 123)
        elif scenario == "non-utf8-reason":
            ws.transport.write(close_frame(struct.pack("!H", 1000) + b"ok\xff\xfe"))
            await wait_end(ws)
        elif scenario == "flood":
            reader = asyncio.ensure_future(drain(ws))
            for i in range(int(arg)):
                await ws.send("m%d" % i)
            await ws.close(1000, "flood done")
            echoes = await reader
            print("result echoes=%d close_code=%s" % (echoes, close_code(ws)), flush=True)
            return
        elif scenario == "slow-reader":
            await ws.send("!flood")
            ws.transport.pause_reading()
            await asyncio.sleep(30)
        else:
            raise SystemExit("unknown scenario " + scenario)
    print("result close_code=%s" % close_code(ws), flush=True)


async def expect_refusal(url):
    """Connects and expects the upgrade to be refused: prints the HTTP status it got."""
    try:
        async with connect(url, ping_interval=None):
            print("result status=101", flush=True)
    except InvalidStatus as e:
        print("result status=%d" % e.response.status_code, flush=True)


if __name__ == "__main__":
    if sys.argv[2] == "expect-refusal":
        asyncio.run(expect_refusal(sys.argv[1]))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
