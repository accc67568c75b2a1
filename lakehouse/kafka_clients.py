"""KAFKA_OPTIONS for the Python clients of the topic: the producer, topic
creation (`make up`), the DAG's completeness sensor, the benchmark and the
chaos run.

KAFKA_OPTIONS is written once, in the Java client's property names, because
Spark's Kafka connector (the streams) takes them as they are. The Python
clients (kafka-python) name the same settings differently; `client_config`
translates the connection's security settings:

    security.protocol                     security_protocol
    sasl.mechanism                        sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
    sasl.jaas.config                      sasl_plain_username, sasl_plain_password
                                          (PlainLoginModule, ScramLoginModule)
    ssl.truststore.location / .type=PEM   the CA certificates trusted (else the system's)
    ssl.truststore.certificates           the same, inline PEM
    ssl.keystore.location / .type=PEM     the client certificate and key (mutual TLS)
    ssl.key.password                      the key's password
    ssl.endpoint.identification.algorithm ""  turns host name checking off

Java-only key stores (JKS, PKCS12) and mechanisms the Python clients cannot
use (GSSAPI, OAUTHBEARER) raise `KafkaOptionsError` naming the key: use PEM
files, which Kafka's Java client reads too (KIP-651). Every other key
(consumer tuning such as fetch.max.bytes or isolation.level) concerns the
streams only and is left out here.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lakehouse.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: The login modules whose username and password the Python clients can use.
LOGIN_MODULES = ("org.apache.kafka.common.security.plain.PlainLoginModule",
                 "org.apache.kafka.common.security.scram.ScramLoginModule")
#: Keys read here; any other sasl.* or ssl.* key raises (a security setting left out silently could weaken it).
SECURITY_KEYS = {
    "security.protocol", "sasl.mechanism", "sasl.jaas.config",
    "ssl.truststore.location", "ssl.truststore.type", "ssl.truststore.certificates", "ssl.truststore.password",
    "ssl.keystore.location", "ssl.keystore.type", "ssl.key.password", "ssl.keystore.password",
    "ssl.endpoint.identification.algorithm",
}
_JAAS = re.compile(r'^\s*(?P<module>[\w.$]+)\s+(?:required|requisite|sufficient|optional)\s*(?P<options>.*?);?\s*$', re.S)
_JAAS_OPTION = re.compile(r'(\w[\w.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|(\S+?))(?=\s|;|$)')


class KafkaOptionsError(ValueError):
    """A KAFKA_OPTIONS entry the Python clients cannot honour."""


def java_options(settings: Settings) -> dict[str, str]:
    """KAFKA_OPTIONS with the `kafka.` prefix some users write taken off."""
    return {k.removeprefix("kafka."): str(v) for k, v in settings.kafka_options.items()}


def client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword arguments for the connection KAFKA_OPTIONS
    describes (plus bootstrap_servers); {} of security for a plain broker."""
    opts = java_options(settings)
    unknown = sorted(k for k in opts if k.startswith(("sasl.", "ssl.")) and k not in SECURITY_KEYS)
    if unknown:
        raise KafkaOptionsError(
            f"KAFKA_OPTIONS {', '.join(unknown)}: not supported for the Python Kafka clients (producer, topic "
            f"creation, completeness sensor); they read {', '.join(sorted(SECURITY_KEYS))}")
    config: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_list}
    protocol = opts.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise KafkaOptionsError(f"KAFKA_OPTIONS security.protocol={protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    config["security_protocol"] = protocol
    if protocol.startswith("SASL_"):
        config.update(_sasl(opts))
    if protocol.endswith("SSL"):
        config["ssl_context"] = ssl_context(opts)
    return config


def _sasl(opts: dict[str, str]) -> dict[str, Any]:
    mechanism = opts.get("sasl.mechanism", "GSSAPI").upper()
    if mechanism not in MECHANISMS:
        unset = "" if "sasl.mechanism" in opts else " (the Java client's default when unset)"
        raise KafkaOptionsError(f"KAFKA_OPTIONS sasl.mechanism={mechanism}{unset}: the Python Kafka clients support "
                                f"{', '.join(MECHANISMS)} here")
    jaas = opts.get("sasl.jaas.config")
    if not jaas:
        raise KafkaOptionsError(f"KAFKA_OPTIONS has sasl.mechanism={mechanism} but no sasl.jaas.config "
                                "with the username and password")
    module, options = parse_jaas(jaas)
    if module not in LOGIN_MODULES:
        raise KafkaOptionsError(f"KAFKA_OPTIONS sasl.jaas.config uses {module}; expected one of "
                                f"{', '.join(LOGIN_MODULES)}")
    if "username" not in options or "password" not in options:
        raise KafkaOptionsError("KAFKA_OPTIONS sasl.jaas.config has no username=\"...\" password=\"...\"")
    return {"sasl_mechanism": mechanism, "sasl_plain_username": options["username"],
            "sasl_plain_password": options["password"]}


def parse_jaas(text: str) -> tuple[str, dict[str, str]]:
    """One JAAS login module entry, as Kafka's sasl.jaas.config takes it:
    `<module> required key="value" ...;`. Returns the module and its options."""
    m = _JAAS.match(text)
    if not m:
        raise KafkaOptionsError("KAFKA_OPTIONS sasl.jaas.config is not `<LoginModule> required key=\"value\" ...;`")
    options = {k: bare or re.sub(r"\\(.)", r"\1", quoted) for k, quoted, bare in _JAAS_OPTION.findall(m.group("options"))}
    return m.group("module"), options


def ssl_context(opts: dict[str, str]) -> ssl.SSLContext:
    """The TLS context of the connection: the PEM trust store (else the
    system's CAs), the PEM client key store for mutual TLS, host name checks
    unless ssl.endpoint.identification.algorithm is empty."""
    for kind in ("truststore", "keystore"):
        given = f"ssl.{kind}.location" in opts or (kind == "truststore" and "ssl.truststore.certificates" in opts)
        store_type = opts.get(f"ssl.{kind}.type", "JKS").upper()
        if given and store_type != "PEM":
            raise KafkaOptionsError(
                f"KAFKA_OPTIONS ssl.{kind}.type={store_type}: the Python Kafka clients read PEM only; convert the "
                f"{kind} to PEM and set ssl.{kind}.type=PEM (Kafka's Java client reads PEM too)")
    context = ssl.create_default_context(
        cafile=opts.get("ssl.truststore.location"), cadata=opts.get("ssl.truststore.certificates"))
    if "ssl.keystore.location" in opts:
        # Kafka's PEM key store: the private key and the certificate chain in one file
        path = opts["ssl.keystore.location"]
        context.load_cert_chain(path, path, password=opts.get("ssl.key.password"))
    if opts.get("ssl.endpoint.identification.algorithm", "https") == "":
        context.check_hostname = False
    return context


#: What a broker answers a client it will not let in, as kafka-python logs it
#: (its bootstrap retries every failure until its timeout and then raises
#: only "Unable to bootstrap").
REFUSAL = re.compile(r"SaslAuthenticationFailed|UnsupportedSaslMechanism|IllegalSaslState|AuthorizationFailed"
                     r"|CERTIFICATE_VERIFY_FAILED|WRONG_VERSION_NUMBER|SSLError")


@contextmanager
def refusals() -> Iterator[list[str]]:
    """The broker's refusals kafka-python logs while the block runs (wrong
    credentials, an untrusted certificate, TLS against a plain listener)."""
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if REFUSAL.search(message):
                seen.append(message)

    handler, logger = Handler(logging.WARNING), logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def end_offsets(settings: Settings, topic: str, timeout_ms: int = 10_000) -> dict[int, int]:
    """The topic's end offset (the next record's) per partition, asked of the broker now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                             **client_config(settings))
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()} if tps else {}
    finally:
        consumer.close()
