"""Helpers for tests against the real broker: fresh topics, recreating a
topic, reading a topic back, TLS certificates for a secured broker. Imported
by the broker, producer, stream data-loss and secured-cluster tests."""

from __future__ import annotations

import ipaddress
import time
import uuid
from datetime import datetime, timedelta, timezone

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from lakehouse.settings import Settings


def fresh_topic(settings: Settings, prefix: str = "t", partitions: int = 3) -> str:
    """A new, uniquely named topic, so tests never see each other's records."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def recreate_topic(settings: Settings, name: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_list)
    try:
        admin.delete_topics([name])
        for _ in range(50):
            if name not in admin.list_topics():
                break
            time.sleep(0.1)
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every record of the topic (assign/seek, no group), waiting for `expected`."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_list, group_id=None,
                             enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=50_000).values():
                out.extend(records)
        # one more short poll: nothing beyond `expected` may be there
        for records in consumer.poll(timeout_ms=300).values():
            out.extend(records)
        return out
    finally:
        consumer.close()


def make_certificates(where) -> tuple[str, str]:
    """A CA and, signed by it, the broker's key and certificate for 127.0.0.1
    (PEM: Kafka's PEM key store holds the key and the chain in one file).
    Returns (CA certificate path, broker key store path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(timezone.utc)

    def cert(subject, issuer, public_key, signing_key, ca: bool, san=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(san, critical=False)
        return b.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehouse test CA")])
    ca_cert = cert(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    server = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key.public_key(),
                  ca_key, ca=False, san=san)
    pem = serialization.Encoding.PEM
    ca_path, store_path = where / "ca.pem", where / "broker.pem"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    store_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + server.public_bytes(pem) + ca_cert.public_bytes(pem))
    return str(ca_path), str(store_path)
