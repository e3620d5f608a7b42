"""cert-manager and the platform's certificates, built as data (roles/tls renders them with the
``k3sllm.platform.tls_cert_manager_objects`` and ``k3sllm.platform.tls_objects`` filters).

Every service certificate lives in kube-system and is listed in Traefik's default TLSStore, so an Ingress in any
namespace only names its host under ``tls:``: Traefik picks the certificate by SNI.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils import charts
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import ChartManifestError

CERT_MANAGER_SETTINGS = (
    "namespace",
    "chart_repo",
    "chart_version",
    "chart_content",
    "image_registry",
    "network_policies",
    "api_server_cidrs",
    "prometheus_namespace",
    "values_extra",
)
TLS_SETTINGS = (
    "mode",
    "hostnames",
    "default_service",
    "cert_manager_namespace",
    "ca_common_name",
    "ca_duration",
    "certificate_duration",
    "acme_environment",
    "acme_server",
    "acme_email",
    "byo_certificate",
    "byo_key",
    "https_port",
    "min_version",
    "hsts_max_age",
    "hsts_include_subdomains",
    "hsts_preload",
    "traefik_values_extra",
)
MODES = ("selfsigned", "acme", "byo")
SERVICE_NAMESPACE = "kube-system"
CA_NAME = "k3sllm-ca"
BOOTSTRAP_ISSUER = "k3sllm-selfsigned"
BYO_SECRET = "k3sllm-tls-byo"
HSTS_MIDDLEWARE = "k3sllm-hsts"
WEBHOOK_PORT = 10250
METRICS_PORT = 9402
PRIVATE_KEY = {"algorithm": "ECDSA", "size": 256}


def cert_manager_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """CRDs installed and kept on uninstall, metrics on (scraped by our rules, no chart ServiceMonitor)."""
    values: dict[str, Any] = {
        "crds": {"enabled": True, "keep": True},
        "prometheus": {"enabled": True, "servicemonitor": {"enabled": False}},
    }
    mirror = charts.registry(settings["image_registry"])
    if mirror:
        values["imageRegistry"] = mirror
    return charts.deep_merge(
        values, charts.mapping(settings, "values_extra", "tls_cert_manager_values_extra")
    )


def cert_manager_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """cert-manager's namespace, its HelmChart and (when on) the namespace's NetworkPolicies, in apply order."""
    charts.require(settings, CERT_MANAGER_SETTINGS, "tls_cert_manager_objects")
    namespace_name = settings["namespace"]
    objects = [
        charts.namespace(namespace_name, "restricted"),
        charts.helm_chart(
            "cert-manager",
            namespace_name,
            cert_manager_values(settings),
            repo=settings["chart_repo"],
            version=settings["chart_version"],
            content=settings["chart_content"],
        ),
    ]
    if charts.flag(settings, "network_policies", "tls_network_policies"):
        objects += [
            charts.default_deny_ingress(namespace_name),
            # Only the API server calls cert-manager's admission webhook (pod port).
            charts.from_api_server(
                "allow-webhook-from-api-server",
                namespace_name,
                {"app.kubernetes.io/component": "webhook"},
                settings["api_server_cidrs"],
                WEBHOOK_PORT,
            ),
            # Prometheus's own pods read the metrics of the controller, the cainjector and the webhook.
            charts.network_policy(
                "allow-prometheus",
                namespace_name,
                {},
                [
                    {
                        "from": [charts.pods_in(settings["prometheus_namespace"], charts.PROMETHEUS_POD)],
                        "ports": charts.tcp_ports(METRICS_PORT),
                    }
                ],
            ),
        ]
    return objects


def secret_names(mode: str, hostnames: Mapping[str, str]) -> dict[str, str]:
    """The TLS Secret each service's certificate is kept in: one per service, or the one certificate you bring."""
    return {service: BYO_SECRET if mode == "byo" else f"k3sllm-tls-{service}" for service in hostnames}


def issuer_name(mode: str, acme_environment: str) -> str:
    return CA_NAME if mode == "selfsigned" else f"k3sllm-acme-{acme_environment}"


def _issuer_ref(name: str) -> dict[str, str]:
    return {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": name}


def _cluster_issuer(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


def private_ca(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A self-signed issuer that only bootstraps the CA certificate, the CA, and the issuer signing with it."""
    return [
        _cluster_issuer(BOOTSTRAP_ISSUER, {"selfSigned": {}}),
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            # A ClusterIssuer reads its CA from cert-manager's own namespace.
            "metadata": {"name": CA_NAME, "namespace": settings["cert_manager_namespace"]},
            "spec": {
                "isCA": True,
                "commonName": settings["ca_common_name"],
                "secretName": CA_NAME,
                "duration": settings["ca_duration"],
                "privateKey": dict(PRIVATE_KEY),
                "issuerRef": _issuer_ref(BOOTSTRAP_ISSUER),
            },
        },
        _cluster_issuer(CA_NAME, {"ca": {"secretName": CA_NAME}}),
    ]


def acme_issuer(settings: Mapping[str, Any]) -> dict[str, Any]:
    """HTTP-01 through K3s's Traefik: the names must resolve here and port 80 be reachable."""
    name = issuer_name("acme", settings["acme_environment"])
    return _cluster_issuer(
        name,
        {
            "acme": {
                "server": settings["acme_server"],
                "email": settings["acme_email"],
                "privateKeySecretRef": {"name": f"{name}-account"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": "traefik"}}}],
            }
        },
    )


def byo_secret(certificate: str, key: str) -> dict[str, Any]:
    """Your certificate and key as a TLS Secret (rendered manifests redact its values on export)."""

    def encoded(pem: str) -> str:
        return base64.b64encode(str(pem).strip().encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": BYO_SECRET, "namespace": SERVICE_NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": encoded(certificate), "tls.key": encoded(key)},
    }


def service_certificate(service: str, host: str, secret: str, issuer: str, duration: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": f"k3sllm-{service}", "namespace": SERVICE_NAMESPACE},
        "spec": {
            "secretName": secret,
            "dnsNames": [host],
            "duration": duration,
            "privateKey": {**PRIVATE_KEY, "rotationPolicy": "Always"},
            "issuerRef": _issuer_ref(issuer),
        },
    }


def traefik_objects(settings: Mapping[str, Any], secrets: Mapping[str, str]) -> list[dict[str, Any]]:
    """Traefik serves the certificates by SNI, the default service's to clients without SNI; no TLS below the
    minimum; every HTTP request redirected to HTTPS (ACME HTTP-01 challenges follow it) and every HTTPS response
    carrying HSTS."""
    traefik_values = charts.deep_merge(
        {
            "additionalArguments": [
                f"--entryPoints.web.http.redirections.entryPoint.to=:{settings['https_port']}",
                "--entryPoints.web.http.redirections.entryPoint.scheme=https",
                "--entryPoints.web.http.redirections.entryPoint.permanent=true",
                f"--entryPoints.websecure.http.middlewares={SERVICE_NAMESPACE}-{HSTS_MIDDLEWARE}@kubernetescrd",
            ]
        },
        charts.mapping(settings, "traefik_values_extra", "tls_traefik_values_extra"),
    )
    return [
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "TLSStore",
            "metadata": {"name": "default", "namespace": SERVICE_NAMESPACE},
            "spec": {
                "defaultCertificate": {"secretName": secrets[settings["default_service"]]},
                "certificates": [{"secretName": secret} for secret in dict.fromkeys(secrets.values())],
            },
        },
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "TLSOption",
            "metadata": {"name": "default", "namespace": SERVICE_NAMESPACE},
            "spec": {"minVersion": settings["min_version"], "sniStrict": False},
        },
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": {"name": HSTS_MIDDLEWARE, "namespace": SERVICE_NAMESPACE},
            "spec": {
                "headers": {
                    "stsSeconds": settings["hsts_max_age"],
                    "stsIncludeSubdomains": charts.flag(
                        settings, "hsts_include_subdomains", "tls_hsts_include_subdomains"
                    ),
                    "stsPreload": charts.flag(settings, "hsts_preload", "tls_hsts_preload"),
                    "forceSTSHeader": True,
                }
            },
        },
        {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChartConfig",
            "metadata": {"name": "traefik", "namespace": SERVICE_NAMESPACE},
            "spec": {"valuesContent": charts.to_yaml(traefik_values)},
        },
    ]


def tls_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Issuers (or your certificate), one Certificate per service, and Traefik's HTTPS configuration."""
    charts.require(settings, TLS_SETTINGS, "tls_objects")
    mode = settings["mode"]
    if mode not in MODES:
        raise ChartManifestError(f"tls_mode is {mode!r}: set one of {', '.join(MODES)}")
    hostnames = charts.mapping(settings, "hostnames", "tls_hostnames")
    if settings["default_service"] not in hostnames:
        raise ChartManifestError(
            f"tls_default_service is {settings['default_service']!r}: set one of the services of tls_hostnames "
            f"({', '.join(hostnames)})"
        )
    secrets = secret_names(mode, hostnames)
    objects: list[dict[str, Any]]
    if mode == "selfsigned":
        objects = private_ca(settings)
    elif mode == "acme":
        objects = [acme_issuer(settings)]
    else:
        objects = [byo_secret(settings["byo_certificate"], settings["byo_key"])]
    if mode != "byo":
        issuer = issuer_name(mode, settings["acme_environment"])
        objects += [
            service_certificate(service, host, secrets[service], issuer, settings["certificate_duration"])
            for service, host in hostnames.items()
        ]
    return objects + traefik_objects(settings, secrets)
