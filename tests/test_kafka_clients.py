"""KAFKA_OPTIONS (Java client property names, as the streams' Spark connector
takes them) translated for the Python clients: producer, topic creation,
completeness sensor (lakehouse.kafka_clients). Pure units; the secured
cluster itself is tests/test_kafka_secured.py."""

from __future__ import annotations

import json
import re
import ssl

import pytest

from lakehouse.kafka_clients import KafkaOptionsError, client_config, parse_jaas
from lakehouse.settings import REPO_ROOT, Settings
from tests.kafka_helpers import make_certificates

SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


def settings(**options) -> Settings:
    return Settings(_env_file=None, kafka_bootstrap_servers="b1:9093,b2:9093", kafka_options=options)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> str:
    return make_certificates(tmp_path_factory.mktemp("certs"))[0]


def test_a_plain_broker_needs_nothing_but_its_address():
    assert client_config(settings()) == {"bootstrap_servers": ["b1:9093", "b2:9093"], "security_protocol": "PLAINTEXT"}
    # consumer tuning is the streams' business; the Python clients leave it out
    assert client_config(settings(**{"fetch.max.bytes": "1000", "kafka.isolation.level": "read_uncommitted"})) \
        == client_config(settings())


def test_the_documented_sasl_ssl_example_translates(ca):
    """The KAFKA_OPTIONS line of docs/streaming.md, with its trust store here."""
    doc = (REPO_ROOT / "docs" / "streaming.md").read_text()
    options = json.loads(re.search(r"^KAFKA_OPTIONS=(\{.*\})$", doc, re.M).group(1))
    options["ssl.truststore.location"] = ca
    config = client_config(settings(**options))
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == options["sasl.mechanism"]
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("lakehouse", "...")
    context = config["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "lakehouse test CA"),),)]


def test_kafka_prefix_inline_certificates_and_no_host_name_check(ca):
    pem = open(ca).read()
    config = client_config(settings(**{
        "kafka.security.protocol": "ssl", "kafka.ssl.truststore.type": "PEM", "ssl.truststore.certificates": pem,
        "ssl.endpoint.identification.algorithm": ""}))
    assert config["security_protocol"] == "SSL" and "sasl_mechanism" not in config
    assert not config["ssl_context"].check_hostname
    assert len(config["ssl_context"].get_ca_certs()) == 1


def test_mutual_tls_with_a_pem_key_store(tmp_path):
    ca, keystore = make_certificates(tmp_path)
    config = client_config(settings(**{"security.protocol": "SSL", "ssl.truststore.type": "PEM",
                                       "ssl.truststore.location": ca, "ssl.keystore.type": "PEM",
                                       "ssl.keystore.location": keystore}))
    assert isinstance(config["ssl_context"], ssl.SSLContext)
    with pytest.raises(ssl.SSLError):  # the key store is read: a wrong file is no key store
        client_config(settings(**{"security.protocol": "SSL", "ssl.keystore.type": "PEM",
                                  "ssl.keystore.location": ca}))


def test_jaas_values_quoted_escaped_or_bare():
    assert parse_jaas(f'{SCRAM} required username="a b" password="p\\"w;d";') == (
        SCRAM, {"username": "a b", "password": 'p"w;d'})
    assert parse_jaas(f"{SCRAM} required username=u password=x;")[1] == {"username": "u", "password": "x"}


@pytest.mark.parametrize("options, message", [
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.jaas.config":
      f'{SCRAM} required username="u" password="p";', "ssl.truststore.location": "/etc/kafka/truststore.jks"},
     "ssl.truststore.type=JKS: the Python Kafka clients read PEM only"),
    ({"security.protocol": "SSL", "ssl.keystore.type": "PKCS12", "ssl.keystore.location": "k.p12"},
     "ssl.keystore.type=PKCS12"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.jaas.config": f'{SCRAM} required username="u" password="p";'},
     "sasl.mechanism=GSSAPI"),  # the Java client's default mechanism
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}, "sasl.mechanism=OAUTHBEARER"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"}, "no sasl.jaas.config"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config":
      'com.example.Login required username="u" password="p";'}, "uses com.example.Login"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config":
      f'{SCRAM} required username="u";'}, "no username="),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config": "nonsense"},
     "is not `<LoginModule> required"),
    ({"security.protocol": "TLS"}, "security.protocol='TLS'"),
    ({"security.protocol": "SSL", "ssl.cipher.suites": "TLS_AES_256_GCM_SHA384"}, "ssl.cipher.suites: not supported"),
])
def test_what_the_python_clients_cannot_honour_is_refused_by_name(options, message):
    with pytest.raises(KafkaOptionsError, match=re.escape(message)):
        client_config(settings(**options))
