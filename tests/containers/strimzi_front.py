"""A Kafka listener in front of the embedded broker that authenticates clients as a Strimzi listener would.

Runs inside a container of the app image (standard library only): `python3 strimzi_front.py --listen 0.0.0.0:9093
--target tansu:9092 [--cert C --key K] [--client-ca CA] [--scram-users users.json]`. tansu 0.6 cannot serve TLS
and cannot hold SCRAM users with memory storage (docs/embedded-broker.md), so this front does both:
- TLS with the cluster CA's server certificate (`--cert/--key`);
- mutual TLS (`--client-ca`): the client certificate must be signed by the clients CA and its CN must be a known
  KafkaUser, as Strimzi's `authentication: tls` requires;
- SASL/SCRAM-SHA-512 (`--scram-users`, {user: password}): ApiVersions requests are relayed to the broker,
  SaslHandshake and SaslAuthenticate are answered here (RFC 5802/7677, Kafka's framing), and only an
  authenticated connection is relayed on.
Each accepted or refused connection is one JSON line on stdout: the test reads who authenticated as whom.
Authorization (KafkaUser ACLs) is not enforced: tansu has none.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ILLEGAL_SASL_STATE, UNSUPPORTED_MECHANISM, SASL_AUTHENTICATION_FAILED = 34, 33, 58
MECHANISM = "SCRAM-SHA-512"
ITERATIONS = 4096
MAX_FRAME = 1 << 20  # authentication frames are small; anything larger before login is refused


class Refused(Exception):
    pass


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


# ---- Kafka framing of the few requests answered here ---------------------------------------------------------

@dataclass
class Request:
    api_key: int
    version: int
    correlation_id: int
    body: bytes  # after the header (and its tagged fields, for flexible versions)
    raw: bytes  # the whole frame without its size prefix


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _flexible(request: Request) -> bool:
    return request.api_key == SASL_AUTHENTICATE and request.version >= 2


def parse(raw: bytes) -> Request:
    api_key, version, correlation_id, client_len = struct.unpack(">hhih", raw[:10])
    at = 10 + max(client_len, 0)
    request = Request(api_key, version, correlation_id, b"", raw)
    if _flexible(request):
        tags, at = _uvarint(raw, at)
        for _ in range(tags):
            _, at = _uvarint(raw, at)
            size, at = _uvarint(raw, at)
            at += size
    request.body = raw[at:]
    return request


def auth_bytes(request: Request) -> bytes:
    if _flexible(request):
        size, at = _uvarint(request.body, 0)
        return request.body[at:at + size - 1]
    (size,) = struct.unpack(">i", request.body[:4])
    return request.body[4:4 + size]


def handshake_response(request: Request, error: int) -> bytes:
    mechanism = MECHANISM.encode()
    return struct.pack(">ihih", request.correlation_id, error, 1, len(mechanism)) + mechanism


def authenticate_response(request: Request, error: int, message: str | None, payload: bytes) -> bytes:
    if _flexible(request):
        text = b"\x00" if message is None else _put_uvarint(len(message.encode()) + 1) + message.encode()
        return (struct.pack(">i", request.correlation_id) + b"\x00" + struct.pack(">h", error) + text
                + _put_uvarint(len(payload) + 1) + payload + struct.pack(">q", 0) + b"\x00")
    text = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message.encode())) + message.encode()
    out = struct.pack(">ih", request.correlation_id, error) + text + struct.pack(">i", len(payload)) + payload
    return out + (struct.pack(">q", 0) if request.version >= 1 else b"")


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= MAX_FRAME:
        raise Refused(f"frame of {size} bytes before authentication")
    return await reader.readexactly(size)


def write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(struct.pack(">i", len(payload)) + payload)


# ---- SCRAM-SHA-512, server side ------------------------------------------------------------------------------

def _h(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha512).digest()


def _attributes(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


class Scram:
    """One SCRAM exchange: first() answers the client-first message, final() checks the proof."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.user = ""
        self.salted = b""
        self.first_bare = self.server_first = self.nonce = ""

    def first(self, message: str) -> str:
        gs2_cbind, _authzid, bare = message.split(",", 2)
        if gs2_cbind != "n":
            raise Refused(f"channel binding {gs2_cbind!r} is not offered")
        attrs = _attributes(bare)
        self.user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        if self.user not in self.users:
            raise Refused(f"unknown user {self.user!r}")
        salt = os.urandom(16)
        self.salted = hashlib.pbkdf2_hmac("sha512", self.users[self.user].encode(), salt, ITERATIONS)
        self.nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
        self.first_bare = bare
        self.server_first = f"r={self.nonce},s={base64.b64encode(salt).decode()},i={ITERATIONS}"
        return self.server_first

    def final(self, message: str) -> str:
        without_proof, _, proof = message.rpartition(",p=")
        attrs = _attributes(without_proof)
        if attrs.get("r") != self.nonce or attrs.get("c") != base64.b64encode(b"n,,").decode():
            raise Refused("nonce or channel binding changed between the messages")
        auth_message = f"{self.first_bare},{self.server_first},{without_proof}".encode()
        stored_key = hashlib.sha512(_h(self.salted, b"Client Key")).digest()
        signature = _h(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if not hmac.compare_digest(hashlib.sha512(client_key).digest(), stored_key):
            raise Refused(f"wrong password for {self.user!r}")
        return "v=" + base64.b64encode(_h(_h(self.salted, b"Server Key"), auth_message)).decode()


# ---- the listener --------------------------------------------------------------------------------------------

@dataclass
class Front:
    target: tuple[str, int]
    scram_users: dict[str, str] | None
    tls_users: set[str] | None  # mutual TLS: the CNs admitted

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        peer = client_w.get_extra_info("peername")
        broker_w: asyncio.StreamWriter | None = None
        try:
            broker_r, broker_w = await asyncio.open_connection(*self.target)
            user = self.tls_user(client_w)
            if self.scram_users is not None:
                user = await self.scram(client_r, client_w, broker_r, broker_w)
            say("accepted", peer=str(peer), user=user)
            await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))
        except Refused as exc:
            say("refused", peer=str(peer), reason=str(exc))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            for writer in (client_w, broker_w):
                if writer is not None:
                    writer.close()

    def tls_user(self, writer: asyncio.StreamWriter) -> str | None:
        if self.tls_users is None:
            return None
        cert = writer.get_extra_info("peercert") or {}
        names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
        if not names or names[0] not in self.tls_users:
            raise Refused(f"client certificate CN {names} is no KafkaUser")
        return str(names[0])

    async def scram(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                    broker_r: asyncio.StreamReader, broker_w: asyncio.StreamWriter) -> str:
        assert self.scram_users is not None
        exchange = Scram(self.scram_users)
        step = "handshake"
        while True:
            request = parse(await read_frame(client_r))
            if request.api_key == API_VERSIONS:  # the broker says what it supports
                write_frame(broker_w, request.raw)
                write_frame(client_w, await read_frame(broker_r))
            elif request.api_key == SASL_HANDSHAKE and step == "handshake":
                mechanism = request.body[2:].decode(errors="replace")
                ok = request.version >= 1 and mechanism == MECHANISM
                write_frame(client_w, handshake_response(request, 0 if ok else UNSUPPORTED_MECHANISM))
                if not ok:
                    raise Refused(f"SaslHandshake v{request.version} for {mechanism!r}")
                step = "first"
            elif request.api_key == SASL_AUTHENTICATE and step in ("first", "final"):
                message = auth_bytes(request).decode(errors="replace")
                try:
                    answer = exchange.first(message) if step == "first" else exchange.final(message)
                except (Refused, KeyError, ValueError) as exc:
                    write_frame(client_w, authenticate_response(request, SASL_AUTHENTICATION_FAILED,
                                                                "Authentication failed", b""))
                    await client_w.drain()
                    raise Refused(str(exc)) from None
                write_frame(client_w, authenticate_response(request, 0, None, answer.encode()))
                if step == "final":
                    await client_w.drain()
                    return exchange.user
                step = "final"
            else:
                raise Refused(f"api key {request.api_key} before authentication ({step})")
            await client_w.drain()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--client-ca", type=Path)
    parser.add_argument("--tls-users", default=None, help="comma-separated CNs admitted with mutual TLS")
    parser.add_argument("--scram-users", type=Path, help="JSON {user: password}")
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    target_host, target_port = args.target.rsplit(":", 1)
    front = Front((target_host, int(target_port)),
                  json.loads(args.scram_users.read_text()) if args.scram_users else None,
                  set(args.tls_users.split(",")) if args.tls_users is not None else None)
    context = tls_context(args.cert, args.key, args.client_ca) if args.cert else None
    if context is not None:
        server = await asyncio.start_server(front.handle, host, int(port), ssl=context, ssl_handshake_timeout=10)
    else:
        server = await asyncio.start_server(front.handle, host, int(port))
    say("listening", address=args.listen, tls=context is not None, scram=front.scram_users is not None,
        mutual_tls=front.tls_users is not None)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
