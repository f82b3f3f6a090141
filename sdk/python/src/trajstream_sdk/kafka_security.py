"""Kafka's security failures as errors that name the TRAJSTREAM_* setting to fix.

aiokafka logs why a bootstrap connection failed and raises only "Unable to bootstrap from [...]": the cause (a
refused password, an untrusted certificate) is lost. ``start_client`` starts a client and, when it cannot
bootstrap, connects once more the same way to learn why. Messages name users, topics and files, never a secret.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka.errors import (
    AuthenticationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from trajstream_sdk.errors import (
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaCertificateError,
    KafkaSecurityError,
)

# What the cluster's ACLs refuse, as aiokafka raises it.
KafkaAuthorizationErrors = (TopicAuthorizationFailedError, GroupAuthorizationFailedError)


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Startable, options: Mapping[str, Any]) -> None:
    """``await client.start()``; a security failure is raised as a ``KafkaSecurityError`` naming the setting."""
    try:
        await client.start()
    except KafkaConnectionError:
        problem = await diagnose(options)
        if problem is None:  # once more: a busy broker may refuse one connection and still be the wrong one's
            await asyncio.sleep(1.0)
            problem = await diagnose(options)
        if problem is None:
            raise
        raise problem from None
    except KafkaAuthorizationErrors as exc:
        raise authorization_error(exc, options) from None


async def diagnose(options: Mapping[str, Any]) -> KafkaSecurityError | None:
    """Connect to the first bootstrap server as a client with ``options`` would; the security problem it meets,
    if any (None: the broker is down or unreachable, which the caller's own error says)."""
    from aiokafka.conn import create_conn

    bootstrap = str(options["bootstrap_servers"])
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        conn = await create_conn(
            host.strip("[]") or "127.0.0.1", int(port), request_timeout_ms=10_000,
            security_protocol=options.get("security_protocol", "PLAINTEXT"), ssl_context=options.get("ssl_context"),
            sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
            sasl_plain_username=options.get("sasl_plain_username"),
            sasl_plain_password=options.get("sasl_plain_password"),
        )  # fmt: skip
    except ssl.SSLCertVerificationError as exc:
        return KafkaCertificateError(
            f"the TLS certificate of the Kafka broker at {bootstrap} is not trusted ({exc.verify_message}): set "
            f"TRAJSTREAM_SSL_CAFILE to the PEM file of the CA that signed it (trusted now: {_trusted(options)})"
        )
    except ssl.SSLError as exc:
        return KafkaCertificateError(
            f"TLS with the Kafka broker at {bootstrap} failed ({exc.reason}): check TRAJSTREAM_SECURITY_PROTOCOL "
            f"and TRAJSTREAM_SSL_CAFILE, TRAJSTREAM_SSL_CERTFILE, TRAJSTREAM_SSL_KEYFILE"
        )
    except (SaslAuthenticationFailed, AuthenticationFailedError):
        return KafkaAuthenticationError(
            f"the Kafka broker at {bootstrap} refused the credentials of user "
            f"{options.get('sasl_plain_username')!r} ({options.get('sasl_mechanism')}): check "
            f"TRAJSTREAM_SASL_PASSWORD and TRAJSTREAM_SASL_USERNAME"
        )
    except UnsupportedSaslMechanismError:
        return KafkaAuthenticationError(
            f"the Kafka broker at {bootstrap} does not accept SASL mechanism {options.get('sasl_mechanism')}: "
            f"set TRAJSTREAM_SASL_MECHANISM to one it enables"
        )
    except Exception:  # refused, timed out, reset: not a security setting this can name
        return None
    conn.close()
    return None


def _trusted(options: Mapping[str, Any]) -> str:
    """The CAs the client's TLS context trusts, by common name (the system's when none was loaded)."""
    context = options.get("ssl_context")
    certs = context.get_ca_certs() if isinstance(context, ssl.SSLContext) else []
    subjects: list[Any] = [c.get("subject", ()) for c in certs]  # ((("commonName", "x"),), ...) per certificate
    names = [str(value) for subject in subjects for rdn in subject for key, value in rdn if key == "commonName"]
    return ", ".join(names) if names else "the system's CAs"


def authorization_error(exc: Exception, options: Mapping[str, Any]) -> KafkaAuthorizationError:
    """A TopicAuthorizationFailed or GroupAuthorizationFailed, naming the user and what it was refused."""
    user = options.get("sasl_plain_username") or "the anonymous user"
    kind = "consumer group" if isinstance(exc, GroupAuthorizationFailedError) else "topic"
    what = ", ".join(str(a) for a in exc.args) or "?"
    return KafkaAuthorizationError(
        f"Kafka refused {user!r} access to {kind} {what} ({type(exc).__name__.removesuffix('Error')}): the "
        f"cluster's ACLs do not allow it; grant it there, or check TRAJSTREAM_SASL_USERNAME and "
        f"TRAJSTREAM_TOPIC_PREFIX"
    )


def as_security_error(exc: BaseException, options: Mapping[str, Any]) -> BaseException:
    """``exc`` as a KafkaAuthorizationError when it is one of Kafka's authorization failures, else itself."""
    if isinstance(exc, KafkaAuthorizationErrors):
        return authorization_error(exc, options)
    return exc
