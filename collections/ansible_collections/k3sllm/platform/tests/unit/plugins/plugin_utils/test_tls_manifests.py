"""cert-manager, the issuers, certificates and Traefik's HTTPS configuration, built directly from the tls role's
settings."""

from __future__ import annotations

import base64

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.tls import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import tls_manifests as tls

FILTERS = FilterModule().filters()
CERT_MANAGER = {
    "namespace": "cert-manager",
    "chart_repo": "https://charts.jetstack.io",
    "chart_version": "v1.21.2",
    "chart_content": "",
    "image_registry": "",
    "network_policies": True,
    "api_server_cidrs": ["10.42.0.0/16"],
    "prometheus_namespace": "monitoring",
    "values_extra": {},
}
TLS = {
    "mode": "selfsigned",
    "hostnames": {"gateway": "llm.example.com", "grafana": "grafana.llm.example.com"},
    "default_service": "gateway",
    "cert_manager_namespace": "cert-manager",
    "ca_common_name": "k3sllm CA llm.example.com",
    "ca_duration": "87600h",
    "certificate_duration": "2160h",
    "acme_environment": "production",
    "acme_server": "",
    "acme_email": "",
    "byo_certificate": "",
    "byo_key": "",
    "https_port": 443,
    "min_version": "VersionTLS12",
    "hsts_max_age": 31536000,
    "hsts_include_subdomains": False,
    "hsts_preload": False,
    "traefik_values_extra": {},
}
ACME = {
    "mode": "acme",
    "acme_environment": "staging",
    "acme_server": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "acme_email": "ops@example.com",
}
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"


def cert_manager(**overrides: object) -> dict[tuple[str, str], dict]:
    objects = FILTERS["tls_cert_manager_objects"]({**CERT_MANAGER, **overrides})
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def chart_values(**overrides: object) -> dict:
    return yaml.safe_load(cert_manager(**overrides)[("HelmChart", "cert-manager")]["spec"]["valuesContent"])


def built(**overrides: object) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in FILTERS["tls_objects"]({**TLS, **overrides})}


def test_cert_manager_objects_in_apply_order():
    objects = tls.cert_manager_objects(CERT_MANAGER)
    assert [o["kind"] for o in objects] == ["Namespace", "HelmChart"] + ["NetworkPolicy"] * 3
    assert objects[0]["metadata"]["labels"] == {"pod-security.kubernetes.io/enforce": "restricted"}
    assert not [k for k in cert_manager(network_policies=False) if k[0] == "NetworkPolicy"]


@pytest.mark.parametrize(("mirror", "expected"), [("", None), ("quay.lan:5000//", "quay.lan:5000")])
def test_cert_manager_values_and_mirror(mirror, expected):
    values = chart_values(image_registry=mirror)
    assert values["crds"] == {"enabled": True, "keep": True}
    assert values["prometheus"] == {"enabled": True, "servicemonitor": {"enabled": False}}
    assert values.get("imageRegistry") == expected


def test_cert_manager_values_extra_merge_deeply():
    values = chart_values(
        values_extra={"prometheus": {"servicemonitor": {"enabled": True}}, "replicaCount": 2}
    )
    assert values["prometheus"] == {"enabled": True, "servicemonitor": {"enabled": True}}
    assert values["replicaCount"] == 2


def test_cert_manager_chart_from_archive():
    spec = cert_manager(chart_content="Q00=")[("HelmChart", "cert-manager")]["spec"]
    assert spec["chartContent"] == "Q00=" and "repo" not in spec and "version" not in spec


def test_cert_manager_webhook_and_metrics_policies():
    objects = cert_manager(api_server_cidrs=["10.42.0.0/16", "fd00::/64"])
    webhook = objects[("NetworkPolicy", "allow-webhook-from-api-server")]["spec"]
    assert webhook["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "webhook"}}
    assert webhook["ingress"][0]["from"] == [
        {"ipBlock": {"cidr": "10.42.0.0/16"}},
        {"ipBlock": {"cidr": "fd00::/64"}},
    ]
    assert webhook["ingress"][0]["ports"] == [{"port": 10250, "protocol": "TCP"}]
    metrics = objects[("NetworkPolicy", "allow-prometheus")]["spec"]["ingress"]
    assert metrics[0]["ports"] == [{"port": 9402, "protocol": "TCP"}]
    assert metrics[0]["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }


def test_selfsigned_mode_makes_a_private_ca_and_a_certificate_per_service():
    objects = built()
    assert list(objects)[:5] == [
        ("ClusterIssuer", "k3sllm-selfsigned"),
        ("Certificate", "k3sllm-ca"),
        ("ClusterIssuer", "k3sllm-ca"),
        ("Certificate", "k3sllm-gateway"),
        ("Certificate", "k3sllm-grafana"),
    ]
    ca = objects[("Certificate", "k3sllm-ca")]
    assert ca["metadata"]["namespace"] == "cert-manager"
    assert ca["spec"]["isCA"] is True and ca["spec"]["duration"] == "87600h"
    assert ca["spec"]["issuerRef"]["name"] == "k3sllm-selfsigned"
    grafana = objects[("Certificate", "k3sllm-grafana")]["spec"]
    assert grafana == {
        "secretName": "k3sllm-tls-grafana",
        "dnsNames": ["grafana.llm.example.com"],
        "duration": "2160h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "k3sllm-ca"},
    }


def test_acme_mode_issues_through_http01_on_traefik():
    objects = built(**ACME)
    issuer = objects[("ClusterIssuer", "k3sllm-acme-staging")]["spec"]["acme"]
    assert issuer == {
        "server": "https://acme-staging-v02.api.letsencrypt.org/directory",
        "email": "ops@example.com",
        "privateKeySecretRef": {"name": "k3sllm-acme-staging-account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "traefik"}}}],
    }
    assert objects[("Certificate", "k3sllm-gateway")]["spec"]["issuerRef"]["name"] == "k3sllm-acme-staging"
    assert ("ClusterIssuer", "k3sllm-ca") not in objects


def test_byo_mode_stores_your_certificate_and_issues_nothing():
    objects = built(mode="byo", byo_certificate=f"\n{CERT}\n", byo_key=KEY)
    assert not [k for k in objects if k[0] in ("Certificate", "ClusterIssuer")]
    secret = objects[("Secret", "k3sllm-tls-byo")]
    assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["namespace"] == "kube-system"
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == CERT
    assert base64.b64decode(secret["data"]["tls.key"]).decode() == KEY
    store = objects[("TLSStore", "default")]["spec"]
    assert store == {
        "defaultCertificate": {"secretName": "k3sllm-tls-byo"},
        "certificates": [{"secretName": "k3sllm-tls-byo"}],  # one secret, listed once
    }


def test_traefik_serves_each_certificate_and_the_default_one_without_sni():
    store = built(default_service="grafana")[("TLSStore", "default")]["spec"]
    assert store == {
        "defaultCertificate": {"secretName": "k3sllm-tls-grafana"},
        "certificates": [{"secretName": "k3sllm-tls-gateway"}, {"secretName": "k3sllm-tls-grafana"}],
    }


def test_traefik_redirects_to_https_with_hsts():
    objects = built(https_port=8443, hsts_preload=True, min_version="VersionTLS13")
    assert objects[("TLSOption", "default")]["spec"] == {"minVersion": "VersionTLS13", "sniStrict": False}
    headers = objects[("Middleware", "k3sllm-hsts")]["spec"]["headers"]
    assert headers == {
        "stsSeconds": 31536000,
        "stsIncludeSubdomains": False,
        "stsPreload": True,
        "forceSTSHeader": True,
    }
    values = yaml.safe_load(objects[("HelmChartConfig", "traefik")]["spec"]["valuesContent"])
    assert values["additionalArguments"] == [
        "--entryPoints.web.http.redirections.entryPoint.to=:8443",
        "--entryPoints.web.http.redirections.entryPoint.scheme=https",
        "--entryPoints.web.http.redirections.entryPoint.permanent=true",
        "--entryPoints.websecure.http.middlewares=kube-system-k3sllm-hsts@kubernetescrd",
    ]


def test_traefik_values_extra_merge():
    objects = built(
        traefik_values_extra={"additionalArguments": ["--log.level=DEBUG"], "ports": {"web": {"port": 81}}}
    )
    values = yaml.safe_load(objects[("HelmChartConfig", "traefik")]["spec"]["valuesContent"])
    assert values == {"additionalArguments": ["--log.level=DEBUG"], "ports": {"web": {"port": 81}}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mode": "letsencrypt"}, "tls_mode is 'letsencrypt': set one of selfsigned, acme, byo"),
        (
            {"default_service": "api"},
            "tls_default_service is 'api': set one of the services of tls_hostnames",
        ),
        ({"hsts_preload": "no"}, "tls_hsts_preload is 'no'"),
        ({"traefik_values_extra": "x"}, "tls_traefik_values_extra must be a mapping"),
    ],
)
def test_bad_settings_name_the_variable(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        built(**override)
