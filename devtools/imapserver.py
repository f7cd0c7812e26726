"""The IMAP side of the local test server (development only): a small IMAP4rev1 server.

``make run`` starts it beside the SMTP test server (``manage.py run_smtp_test_server``), on
127.0.0.1:1993 with implicit TLS from the same local certificate authority. Each user name
gets a mailbox (any password is accepted, as by the SMTP side, or the provider di prova's
bearer token over XOAUTH2) with the folders INBOX, Sent (``\\Sent``, RFC 6154) and Junk
(``\\Junk``), kept on disk under ``var/devsmtp/caselle/<user>/<folder>/<uid>.eml``.

It speaks what a mail program and PsicoGest's mailbox reader use: CAPABILITY, LOGIN,
AUTHENTICATE XOAUTH2, LIST/LSUB, NAMESPACE, SELECT/EXAMINE, (UID) SEARCH, (UID) FETCH with
``BODY.PEEK`` and ``BODYSTRUCTURE``, (UID) STORE, APPEND, CREATE, EXPUNGE, CLOSE, UNSELECT,
NOOP, LOGOUT. ``BODY[]`` without ``.PEEK`` marks a message ``\\Seen`` unless the folder was
opened read-only, as a real server does, so a reader that changes flags shows.

What the SMTP side's "provider" does with accepted mail (bounces, PEC receipts) is
``devtools/provider.py``: it writes those notices into the sender's INBOX here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import email
import email.policy
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from psicogest.files import write_atomically

FOLDERS = (("INBOX", ""), ("Sent", "\\Sent"), ("Junk", "\\Junk"))
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")
logger = logging.getLogger(__name__)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- the store ------------------------------------------------------------------------


@dataclass
class Stored:
    uid: int
    data: bytes
    flags: set[str]
    internal_date: datetime.datetime

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.data, policy=email.policy.compat32)


@dataclass
class _Folder:
    path: Path | None
    uidvalidity: int
    uidnext: int = 1
    messages: list[Stored] = field(default_factory=list)

    def save_meta(self) -> None:
        if self.path is None:
            return
        meta = {
            "uidvalidity": self.uidvalidity,
            "uidnext": self.uidnext,
            "messages": {
                str(m.uid): {"flags": sorted(m.flags), "date": m.internal_date.isoformat()}
                for m in self.messages
            },
        }
        write_atomically(self.path / "meta.json", json.dumps(meta).encode())


class MailStore:
    """Every user's folders, in memory and (with ``root``) on disk; thread-safe."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._lock = threading.RLock()
        self._users: dict[str, dict[str, _Folder]] = {}

    def _user(self, user: str) -> dict[str, _Folder]:
        with self._lock:
            if user not in self._users:
                self._users[user] = {}
                for name, _special in FOLDERS:
                    self._folder_for(user, name)
                self._load_extra(user)
            return self._users[user]

    def _user_dir(self, user: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / _SAFE_NAME.sub("_", user.lower()).lstrip(".")

    def _load_extra(self, user: str) -> None:
        directory = self._user_dir(user)
        if directory is None or not directory.is_dir():
            return
        for child in sorted(directory.iterdir()):
            if child.is_dir() and (child / "meta.json").exists():
                self._folder_for(user, child.name)

    def _folder_for(self, user: str, name: str) -> _Folder:
        folders = self._users[user]
        if name in folders:
            return folders[name]
        directory = self._user_dir(user)
        path = directory / name if directory is not None else None
        stamp = int(datetime.datetime.now(datetime.UTC).timestamp())
        folder = _Folder(path=path, uidvalidity=stamp)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            meta_file = path / "meta.json"
            if meta_file.exists():
                meta = json.loads(meta_file.read_text())
                folder.uidvalidity = int(meta["uidvalidity"])
                folder.uidnext = int(meta["uidnext"])
                for uid, info in sorted(meta["messages"].items(), key=lambda i: int(i[0])):
                    eml = path / f"{uid}.eml"
                    if eml.exists():
                        folder.messages.append(
                            Stored(
                                uid=int(uid),
                                data=eml.read_bytes(),
                                flags=set(info["flags"]),
                                internal_date=datetime.datetime.fromisoformat(info["date"]),
                            )
                        )
            else:
                folder.save_meta()
        folders[name] = folder
        return folder

    def folder_names(self, user: str) -> list[tuple[str, str]]:
        with self._lock:
            specials = dict(FOLDERS)
            return [(name, specials.get(name, "")) for name in self._user(user)]

    def folder(self, user: str, name: str) -> _Folder | None:
        with self._lock:
            folders = self._user(user)
            if name.upper() == "INBOX":
                name = "INBOX"
            return folders.get(name)

    def create(self, user: str, name: str) -> bool:
        with self._lock:
            if self.folder(user, name) is not None or not name or _SAFE_NAME.search(name):
                return False
            self._folder_for(user, name)
            return True

    def deliver(
        self,
        user: str,
        data: bytes,
        *,
        folder: str = "INBOX",
        flags: tuple[str, ...] = (),
        when: datetime.datetime | None = None,
    ) -> int:
        """Store ``data`` in ``user``'s ``folder``; its UID."""
        with self._lock:
            self._user(user)
            target = self.folder(user, folder)
            if target is None:
                raise KeyError(folder)
            uid = target.uidnext
            target.uidnext += 1
            stored = Stored(
                uid=uid,
                data=data,
                flags=set(flags),
                internal_date=when or datetime.datetime.now(datetime.UTC).replace(microsecond=0),
            )
            target.messages.append(stored)
            if target.path is not None:
                write_atomically(target.path / f"{uid}.eml", data)
            target.save_meta()
            return uid

    def messages(self, user: str, folder: str = "INBOX") -> list[Stored]:
        with self._lock:
            target = self.folder(user, folder)
            return list(target.messages) if target else []

    def changed(self, folder: _Folder) -> None:
        with self._lock:
            folder.save_meta()

    def expunge(self, folder: _Folder) -> list[int]:
        """Remove the ``\\Deleted`` messages; their sequence numbers, highest first."""
        with self._lock:
            gone = [i + 1 for i, m in enumerate(folder.messages) if "\\Deleted" in m.flags]
            for message in [m for m in folder.messages if "\\Deleted" in m.flags]:
                if folder.path is not None:
                    (folder.path / f"{message.uid}.eml").unlink(missing_ok=True)
            folder.messages = [m for m in folder.messages if "\\Deleted" not in m.flags]
            folder.save_meta()
            return sorted(gone, reverse=True)


# --- the protocol's syntax ------------------------------------------------------------


class _Bad(Exception):
    """A command the server cannot parse: ``BAD``."""


def _tokens(data: bytes, literals: list[bytes]) -> list[Any]:
    """The arguments of a command line: atoms and quoted strings as ``str``, literals as
    ``bytes`` (``\\x00N\\x00`` placeholders for ``literals[N]``), lists as ``list``."""
    stack: list[list[Any]] = [[]]
    i = 0
    text = data.decode("utf-8", "replace")
    while i < len(text):
        char = text[i]
        if char == " ":
            i += 1
        elif char == "(":
            stack.append([])
            i += 1
        elif char == ")":
            if len(stack) == 1:
                raise _Bad("unbalanced )")
            done = stack.pop()
            stack[-1].append(done)
            i += 1
        elif char == '"':
            i += 1
            value = []
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                value.append(text[i])
                i += 1
            if i >= len(text):
                raise _Bad("unterminated string")
            stack[-1].append("".join(value))
            i += 1
        elif char == "\x00":
            end = text.index("\x00", i + 1)
            stack[-1].append(literals[int(text[i + 1 : end])])
            i = end + 1
        else:
            start, depth = i, 0
            while i < len(text) and (depth or text[i] not in " ()"):
                if text[i] == "[":
                    depth += 1
                elif text[i] == "]":
                    depth -= 1
                i += 1
            stack[-1].append(text[start:i])
    if len(stack) != 1:
        raise _Bad("unbalanced (")
    return stack[0]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def _nstring(value: str | None) -> str:
    return "NIL" if value is None else _quote(value)


def _sequence(spec: str, numbers: list[int]) -> set[int]:
    """The members of ``numbers`` an IMAP sequence set (``1:3,7,9:*``) names."""
    if not numbers:
        return set()
    top = max(numbers)
    wanted: set[int] = set()
    for part in spec.split(","):
        low, _sep, high = part.partition(":")
        try:
            first = top if low == "*" else int(low)
            last = first if not _sep else (top if high == "*" else int(high))
        except ValueError as err:
            raise _Bad("bad sequence set") from err
        first, last = min(first, last), max(first, last)
        wanted.update(n for n in numbers if first <= n <= last)
    return wanted


def _search_date(value: str) -> datetime.date:
    try:
        day, month, year = value.split("-")
        return datetime.date(int(year), _MONTHS.index(month.title()) + 1, int(day))
    except ValueError as err:
        raise _Bad("bad date") from err


def _date_matches(key: str, moment: datetime.datetime, day: datetime.date) -> bool:
    if key == "SINCE":
        return moment.date() >= day
    if key == "BEFORE":
        return moment.date() < day
    return moment.date() == day


def internal_date(moment: datetime.datetime) -> str:
    return f"{moment:%d}-{_MONTHS[moment.month - 1]}-{moment:%Y %H:%M:%S %z}"


def _params(part: Message) -> str:
    params = [(k, v) for k, v in (part.get_params(header="content-type") or [])[1:] if k]
    if not params:
        return "NIL"
    return "(" + " ".join(f"{_quote(k.upper())} {_quote(str(v))}" for k, v in params) + ")"


def body_structure(part: Message) -> str:
    """RFC 3501 ``BODYSTRUCTURE`` of ``part`` (non-extensible form)."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        returned = inner[0] if isinstance(inner, list) and inner else None
        nested = body_structure(returned) if isinstance(returned, Message) else "NIL"
        size = len(returned.as_bytes()) if isinstance(returned, Message) else 0
        return f'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" {size} NIL {nested} 0)'
    if part.is_multipart():
        children = "".join(
            body_structure(child) for child in part.get_payload() if isinstance(child, Message)
        )
        return f"({children} {_quote(part.get_content_subtype().upper())})"
    raw = part.get_payload(decode=False)
    payload = raw if isinstance(raw, str) else ""
    size = len(payload.encode("utf-8", "replace"))
    encoding = str(part.get("Content-Transfer-Encoding", "7BIT")).strip().upper()
    fields = (
        f"{_quote(part.get_content_maintype().upper())} "
        f"{_quote(part.get_content_subtype().upper())} {_params(part)} "
        f"{_nstring(part.get('Content-ID'))} NIL {_quote(encoding)} {size}"
    )
    if part.get_content_maintype() == "text":
        fields += f" {payload.count(chr(10)) + 1}"
    return f"({fields})"


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """A message's header block (with the blank line) and its body."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(separator)
        if found:
            return head + separator, body
    return data, b""


def _header_fields(head: bytes, names: list[str], *, keep: bool) -> bytes:
    wanted = {name.lower() for name in names}
    out: list[bytes] = []
    current: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            out.extend(current)
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        current = [line] if line.strip() and ((name in wanted) == keep) else []
    out.extend(current)
    return b"".join(out) + b"\r\n"


def _section(message: Stored, section: str) -> bytes:
    head, body = split_message(message.data)
    upper = section.upper()
    if upper == "":
        return message.data
    if upper == "HEADER":
        return head
    if upper == "TEXT":
        return body
    if upper.startswith("HEADER.FIELDS"):
        names = re.findall(r"[^\s()]+", section[section.index("(") :]) if "(" in section else []
        return _header_fields(head, names, keep=not upper.startswith("HEADER.FIELDS.NOT"))
    raise _Bad("unsupported section")


# --- the server -----------------------------------------------------------------------


class _Session:
    def __init__(
        self, server: ImapTestServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.user: str | None = None
        self.folder: _Folder | None = None
        self.readonly = False
        # Messages in the selected folder the client has been told of (EXISTS).
        self.known = 0

    async def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.writer.write(data + b"\r\n")
        await self.writer.drain()

    async def read_command(self) -> tuple[bytes, list[bytes]] | None:
        """One command with its literals (``{N}`` answered by ``+``), or ``None`` at EOF."""
        parts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                return None
            line = line.rstrip(b"\r\n")
            found = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not found:
                parts.append(line)
                return b"".join(parts), literals
            size = int(found.group(1))
            if size > self.server.max_literal:
                raise _Bad("literal too large")
            parts.append(line[: found.start()] + b"\x00%d\x00" % len(literals))
            if not found.group(2):
                await self.send("+ Ready for literal data")
            literals.append(await self.reader.readexactly(size))

    def capability(self) -> str:
        words = ["IMAP4rev1", "LITERAL+", "SPECIAL-USE", "NAMESPACE", "UNSELECT", "UIDPLUS"]
        if self.server.xoauth2 is not None:
            words.append("AUTH=XOAUTH2")
        return " ".join(words)

    async def run(self) -> None:
        await self.send(f"* OK [CAPABILITY {self.capability()}] PsicoGest IMAP di test pronto")
        try:
            while True:
                try:
                    command = await self.read_command()
                except _Bad as err:
                    await self.send(f"* BAD {err}")
                    return
                if command is None:
                    return
                line, literals = command
                tag, _sep, rest = line.partition(b" ")
                name, _sep, args = rest.partition(b" ")
                tag_text = tag.decode("ascii", "replace") or "*"
                verb = name.decode("ascii", "replace").upper()
                uid = verb == "UID"
                if uid:
                    name, _sep, args = args.partition(b" ")
                    verb = name.decode("ascii", "replace").upper()
                try:
                    tokens = _tokens(args, literals)
                    done = await self.dispatch(tag_text, verb, tokens, uid=uid)
                except _Bad as err:
                    await self.send(f"{tag_text} BAD {err}")
                    continue
                except (ConnectionError, asyncio.IncompleteReadError):
                    raise
                except Exception:
                    # A bug here must show in the log, not as a client's hung connection.
                    logger.exception("IMAP test server: %s failed", verb)
                    await self.send(f"{tag_text} NO Errore interno del server di test")
                    continue
                if done:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writer.close()

    async def dispatch(self, tag: str, verb: str, args: list[Any], *, uid: bool) -> bool:
        if verb == "CAPABILITY":
            await self.send(f"* CAPABILITY {self.capability()}")
        elif verb == "NOOP":
            pass
        elif verb == "LOGOUT":
            await self.send("* BYE A presto")
            await self.send(f"{tag} OK LOGOUT completed")
            return True
        elif verb == "ID":
            await self.send('* ID ("name" "PsicoGest IMAP di test")')
        elif verb == "LOGIN":
            return await self.login(tag, args)
        elif verb == "AUTHENTICATE":
            return await self.authenticate(tag, args)
        elif self.user is None:
            await self.send(f"{tag} NO Accedi prima (LOGIN)")
            return False
        elif verb in ("LIST", "LSUB"):
            await self.list_folders(verb, args)
        elif verb == "NAMESPACE":
            await self.send('* NAMESPACE (("" "/")) NIL NIL')
        elif verb in ("SELECT", "EXAMINE"):
            return await self.select(tag, verb, args)
        elif verb == "CREATE":
            ok = len(args) == 1 and self.server.store.create(self.user, str(args[0]))
            await self.send(f"{tag} {'OK CREATE completed' if ok else 'NO Cartella non creata'}")
            return False
        elif verb == "APPEND":
            return await self.append(tag, args)
        elif verb in ("SEARCH", "FETCH", "STORE", "EXPUNGE", "CLOSE", "UNSELECT", "STATUS"):
            if verb == "STATUS":
                return await self.status(tag, args)
            if self.folder is None:
                await self.send(f"{tag} NO Seleziona prima una cartella")
                return False
            if verb == "SEARCH":
                await self.search(args, uid=uid)
            elif verb == "FETCH":
                await self.fetch(args, uid=uid)
            elif verb == "STORE":
                if self.readonly:
                    await self.send(f"{tag} NO Cartella aperta in sola lettura")
                    return False
                await self.store_flags(args, uid=uid)
            elif verb == "EXPUNGE":
                if not self.readonly:
                    for number in self.server.store.expunge(self.folder):
                        self.known -= 1
                        await self.send(f"* {number} EXPUNGE")
            else:
                if verb == "CLOSE" and not self.readonly:
                    self.server.store.expunge(self.folder)
                self.folder = None
        else:
            await self.send(f"{tag} BAD Comando non riconosciuto")
            return False
        if self.folder is not None and len(self.folder.messages) != self.known:
            # New mail while selected (a bounce, a receipt): said before the command ends,
            # as a real server does on NOOP and the other commands.
            self.known = len(self.folder.messages)
            await self.send(f"* {self.known} EXISTS")
        await self.send(f"{tag} OK {verb} completed")
        return False

    async def login(self, tag: str, args: list[Any]) -> bool:
        if len(args) != 2:
            raise _Bad("LOGIN user password")
        user, password = (a.decode() if isinstance(a, bytes) else str(a) for a in args)
        with self.server.lock:
            self.server.logins.append(user)
        if self.server.users is not None and self.server.users.get(user) != password:
            await self.send(f"{tag} NO [AUTHENTICATIONFAILED] Credenziali non valide")
            return False
        self.user = user
        await self.send(f"{tag} OK [CAPABILITY {self.capability()}] Accesso eseguito")
        return False

    async def authenticate(self, tag: str, args: list[Any]) -> bool:
        if not args or str(args[0]).upper() != "XOAUTH2" or self.server.xoauth2 is None:
            await self.send(f"{tag} NO Meccanismo non supportato")
            return False
        if len(args) > 1:
            response = str(args[1]).encode()
        else:
            await self.send("+ ")
            response = (await self.reader.readline()).strip()
        try:
            text = base64.b64decode(response, validate=True).decode()
            fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
            user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        except (binascii.Error, UnicodeError, ValueError, KeyError):
            await self.send(f"{tag} BAD XOAUTH2 non valido")
            return False
        with self.server.lock:
            self.server.logins.append(user)
        if not self.server.xoauth2(user, token):
            await self.send(f"{tag} NO [AUTHENTICATIONFAILED] Token non valido")
            return False
        self.user = user
        await self.send(f"{tag} OK Accesso eseguito")
        return False

    async def list_folders(self, verb: str, args: list[Any]) -> None:
        assert self.user is not None
        if len(args) != 2:
            raise _Bad("LIST reference pattern")
        pattern = str(args[1])
        if pattern == "":
            await self.send(f'* {verb} (\\Noselect) "/" ""')
            return
        expression = re.compile(
            "^" + re.escape(pattern).replace(r"\*", ".*").replace("%", "[^/]*") + "$", re.I
        )
        for name, special in self.server.store.folder_names(self.user):
            if expression.match(name):
                attributes = " ".join(filter(None, ("\\HasNoChildren", special)))
                await self.send(f'* {verb} ({attributes}) "/" {_quote(name)}')

    async def select(self, tag: str, verb: str, args: list[Any]) -> bool:
        assert self.user is not None
        folder = self.server.store.folder(self.user, str(args[0])) if args else None
        if folder is None:
            self.folder = None
            await self.send(f"{tag} NO [NONEXISTENT] Cartella inesistente")
            return False
        self.folder, self.readonly = folder, verb == "EXAMINE"
        self.known = len(folder.messages)
        await self.send(f"* FLAGS ({' '.join(SYSTEM_FLAGS)})")
        await self.send(f"* OK [PERMANENTFLAGS ({' '.join(SYSTEM_FLAGS)})] Flags permitted")
        await self.send(f"* {len(folder.messages)} EXISTS")
        await self.send("* 0 RECENT")
        await self.send(f"* OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid")
        await self.send(f"* OK [UIDNEXT {folder.uidnext}] Predicted next UID")
        mode = "READ-ONLY" if self.readonly else "READ-WRITE"
        await self.send(f"{tag} OK [{mode}] {verb} completed")
        return False

    async def status(self, tag: str, args: list[Any]) -> bool:
        assert self.user is not None
        folder = self.server.store.folder(self.user, str(args[0])) if args else None
        if folder is None:
            await self.send(f"{tag} NO [NONEXISTENT] Cartella inesistente")
            return False
        values = {
            "MESSAGES": len(folder.messages),
            "UIDNEXT": folder.uidnext,
            "UIDVALIDITY": folder.uidvalidity,
            "UNSEEN": sum("\\Seen" not in m.flags for m in folder.messages),
            "RECENT": 0,
        }
        items = args[1] if len(args) > 1 and isinstance(args[1], list) else []
        listed = " ".join(f"{i.upper()} {values[i.upper()]}" for i in items if i.upper() in values)
        await self.send(f"* STATUS {_quote(str(args[0]))} ({listed})")
        await self.send(f"{tag} OK STATUS completed")
        return False

    async def append(self, tag: str, args: list[Any]) -> bool:
        assert self.user is not None
        if len(args) < 2 or not isinstance(args[-1], bytes):
            raise _Bad("APPEND folder [flags] [date] literal")
        folder = self.server.store.folder(self.user, str(args[0]))
        if folder is None:
            await self.send(f"{tag} NO [TRYCREATE] Cartella inesistente")
            return False
        flags = tuple(str(f) for f in args[1]) if isinstance(args[1], list) else ()
        uid = self.server.store.deliver(self.user, args[-1], folder=str(args[0]), flags=flags)
        await self.send(f"{tag} OK [APPENDUID {folder.uidvalidity} {uid}] APPEND completed")
        return False

    def _numbered(self) -> list[tuple[int, Stored]]:
        assert self.folder is not None
        return list(enumerate(self.folder.messages, 1))

    def _chosen(self, spec: str, *, uid: bool) -> list[tuple[int, Stored]]:
        numbered = self._numbered()
        keys = [m.uid if uid else n for n, m in numbered]
        wanted = _sequence(spec, keys)
        return [(n, m) for n, m in numbered if (m.uid if uid else n) in wanted]

    async def search(self, args: list[Any], *, uid: bool) -> None:
        found = self._numbered()
        criteria = [str(a) for a in args]
        if criteria[:1] and criteria[0].upper() == "CHARSET":
            criteria = criteria[2:]
        i = 0
        while i < len(criteria):
            key = criteria[i].upper()
            if key in ("SINCE", "BEFORE", "ON") and i + 1 < len(criteria):
                day = _search_date(criteria[i + 1])
                found = [(n, m) for n, m in found if _date_matches(key, m.internal_date, day)]
                i += 2
            elif key in ("SEEN", "UNSEEN"):
                found = [(n, m) for n, m in found if ("\\Seen" in m.flags) == (key == "SEEN")]
                i += 1
            elif key == "UID" and i + 1 < len(criteria):
                wanted = _sequence(criteria[i + 1], [m.uid for _n, m in found])
                found = [(n, m) for n, m in found if m.uid in wanted]
                i += 2
            elif key == "ALL":
                i += 1
            else:
                raise _Bad(f"unsupported search key {key}")
        numbers = " ".join(str(m.uid if uid else n) for n, m in found)
        await self.send(f"* SEARCH {numbers}".rstrip())

    async def fetch(self, args: list[Any], *, uid: bool) -> None:
        if len(args) != 2:
            raise _Bad("FETCH set items")
        items = args[1] if isinstance(args[1], list) else [args[1]]
        names = [str(item) for item in items]
        macros = {
            "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
            "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
            "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY"],
        }
        if len(names) == 1 and names[0].upper() in macros:
            names = macros[names[0].upper()]
        if uid and "UID" not in (n.upper() for n in names):
            names.insert(0, "UID")
        assert self.folder is not None
        for number, message in self._chosen(str(args[0]), uid=uid):
            parts: list[bytes] = []
            marked = False
            for name in names:
                upper = name.upper()
                if upper == "UID":
                    parts.append(b"UID %d" % message.uid)
                elif upper == "FLAGS":
                    parts.append(f"FLAGS ({' '.join(sorted(message.flags))})".encode())
                elif upper == "INTERNALDATE":
                    parts.append(f'INTERNALDATE "{internal_date(message.internal_date)}"'.encode())
                elif upper == "RFC822.SIZE":
                    parts.append(b"RFC822.SIZE %d" % len(message.data))
                elif upper in ("BODYSTRUCTURE", "BODY"):
                    parts.append(f"{upper} {body_structure(message.message)}".encode())
                elif upper in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                    section = {"RFC822": "", "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}
                    parts.append(
                        upper.encode() + b" " + _literal(_section(message, section[upper]))
                    )
                    marked = marked or upper != "RFC822.HEADER"
                elif upper.startswith(("BODY[", "BODY.PEEK[")):
                    inner = name[name.index("[") + 1 : name.rindex("]")]
                    label = f"BODY[{inner}]".encode()
                    parts.append(label + b" " + _literal(_section(message, inner)))
                    marked = marked or not upper.startswith("BODY.PEEK[")
                else:
                    raise _Bad(f"unsupported fetch item {name}")
            if marked and not self.readonly and "\\Seen" not in message.flags:
                message.flags.add("\\Seen")
                self.server.store.changed(self.folder)
                if "FLAGS" not in (n.upper() for n in names):
                    parts.append(f"FLAGS ({' '.join(sorted(message.flags))})".encode())
            await self.send(b"* %d FETCH (" % number + b" ".join(parts) + b")")

    async def store_flags(self, args: list[Any], *, uid: bool) -> None:
        if len(args) != 3:
            raise _Bad("STORE set item flags")
        action = str(args[1]).upper()
        flags = {str(f) for f in (args[2] if isinstance(args[2], list) else [args[2]])}
        assert self.folder is not None
        for number, message in self._chosen(str(args[0]), uid=uid):
            if action.startswith("+FLAGS"):
                message.flags |= flags
            elif action.startswith("-FLAGS"):
                message.flags -= flags
            elif action.startswith("FLAGS"):
                message.flags = set(flags)
            else:
                raise _Bad("STORE +FLAGS, -FLAGS or FLAGS")
            if not action.endswith(".SILENT"):
                uid_part = f"UID {message.uid} " if uid else ""
                listed = " ".join(sorted(message.flags))
                await self.send(f"* {number} FETCH ({uid_part}FLAGS ({listed}))")
        self.server.store.changed(self.folder)


class ImapTestServer:
    """The IMAP server in a thread on loopback, TLS from the first byte (like port 993).

    ``users``: accepted credentials, ``None`` accepts any password; ``xoauth2``: also offer
    AUTHENTICATE XOAUTH2, ``xoauth2(user, token)`` decides.
    """

    def __init__(
        self,
        *,
        store: MailStore,
        ssl_context: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        users: dict[str, str] | None = None,
        xoauth2: Callable[[str, str], bool] | None = None,
        max_literal: int = 50 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.users = users
        self.xoauth2 = xoauth2
        self.max_literal = max_literal
        self.logins: list[str] = []
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Session(self, reader, writer).run()

    def start(self) -> ImapTestServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._handle, self.host, self.port, ssl=self.ssl_context, limit=1 << 20
                    )
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except OSError as err:
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="imap-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> ImapTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
