"""The SSRF guard for outbound requests: which URLs may be called, and at which address.

A URL passes when its scheme is http or https, it carries no user name or password, and its
host is a DNS name or a canonical IP address. Every address the name resolves to must be a
public unicast address: loopback, private, shared (CGNAT), link-local (where cloud metadata
services live: 169.254.169.254, fd00:ec2::254), multicast, unspecified, reserved and documentation
ranges, IPv4-mapped and IPv4-embedding IPv6 (::ffff:127.0.0.1, 6to4, Teredo, NAT64) are refused.
Odd numeric spellings of an IPv4 address (2130706433, 0x7f.1, 017700000001, 127.1), which
resolvers accept and humans misread, are refused whatever they point at.

The check returns the address it approved, and the request connects to exactly that address
(transport.py): a name that resolves differently a moment later (DNS rebinding) changes nothing.
Hosts listed in settings.WEBHOOK_ALLOWED_HOSTS skip the address rules (a receiver on the
local network, a test server); they are still resolved once and pinned.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx
from django.conf import settings

# A DNS name as httpx sends it (IDNA already applied): letters, digits, dashes and underscores in
# dot-separated labels.
HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}"
                      r"[a-z0-9_])?")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class Refused(Exception):
    """The URL may not be called; the message says why (shown on the step and the attempt)."""


@dataclass(frozen=True)
class Destination:
    url: httpx.URL
    host: str  # as sent in the Host header and checked against the certificate
    port: int
    address: str  # the approved IP address the connection goes to


def parse(url: str) -> httpx.URL:
    """The URL as httpx will send it, or Refused with the reason (no DNS, no network)."""
    if not isinstance(url, str) or not url.strip():
        raise Refused("the URL is empty")
    if any(c in url for c in "\r\n\t\x00") or len(url) > 2000:
        raise Refused("the URL has control characters or is longer than 2,000 characters")
    try:
        parsed = httpx.URL(url.strip())
    except Exception as exc:  # noqa: BLE001 (httpx raises InvalidURL or ValueError subclasses)
        raise Refused(f"“{url[:200]}” is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs may be called, not “{parsed.scheme or url[:40]}”")
    if parsed.userinfo:
        raise Refused("the URL may not contain a user name or password")
    host = host_of(parsed)
    if not host:
        raise Refused("the URL has no host")
    literal = _ip_literal(host)
    if literal is None:
        if _odd_number(host):
            raise Refused(f"“{host}” is an unusual spelling of an IP address; write addresses as 203.0.113.7")
        if not HOSTNAME.fullmatch(host):
            raise Refused(f"“{host}” is not a valid host name")
    return parsed


def host_of(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii").lower().rstrip(".")


def _ip_literal(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _odd_number(host: str) -> bool:
    """A host that resolvers read as an IPv4 address although it is not written as one
    (decimal, octal or hex parts, fewer than four parts)."""
    if not re.fullmatch(r"[0-9a-fx.]+", host) or not any(c.isdigit() for c in host):
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address may not be called, or None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if ip.sixtofour is not None or ip.teredo is not None or ip in NAT64 or ip in NAT64_LOCAL:
            return "an IPv6 address that embeds an IPv4 address"
    for problem, is_it in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                           ("link-local (cloud metadata lives there)", ip.is_link_local),
                           ("multicast", ip.is_multicast), ("private", ip.is_private),
                           ("reserved", ip.is_reserved)):
        if is_it:
            return f"a {problem} address"
    if not ip.is_global:
        return "not a public address"
    return None


def allowed_host(host: str) -> bool:
    return host in {h.strip().lower().rstrip(".") for h in getattr(settings, "WEBHOOK_ALLOWED_HOSTS", [])}


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"“{host}” could not be resolved ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Refused(f"“{host}” has no address")
    return addresses


def destination(url: str) -> Destination:
    """Check a URL and choose the address to connect to (resolving the name once)."""
    parsed = parse(url)
    host = host_of(parsed)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = _ip_literal(host)
    addresses = [str(literal)] if literal is not None else resolve(host, port)
    if not allowed_host(host):
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address.split("%", 1)[0]))
            if problem:
                shown = host if literal is not None else f"{host} resolves to {address}, which"
                raise Refused(f"{shown} is {problem}; only public addresses may be called "
                              "(an administrator can allow a host with WEBHOOK_ALLOWED_HOSTS)")
    return Destination(url=parsed, host=host, port=port, address=addresses[0])


def within(url: httpx.URL, base: httpx.URL) -> bool:
    """Whether `url` is the target's URL or below it: same scheme, host and port, and its path
    under the target's path (no dot segments, which a server could resolve above it)."""
    def port(u: httpx.URL) -> int:
        return u.port or (443 if u.scheme == "https" else 80)

    segments = url.path.split("/")
    if "." in segments or ".." in segments:
        return False
    prefix = base.path.rstrip("/")
    return (url.scheme == base.scheme and host_of(url) == host_of(base) and port(url) == port(base)
            and (url.path == base.path or url.path.startswith(prefix + "/") or url.path == prefix))
