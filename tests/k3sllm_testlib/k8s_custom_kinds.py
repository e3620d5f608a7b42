"""Checks for custom resource kinds, which kubernetes-validate has no schema for.

Each checker returns a list of problems (empty when the object is fine). The fields checked are the
ones the controllers need to act at all (K3s helm-controller, cert-manager, prometheus-operator,
Traefik), so a typo that the API server would accept silently is caught here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

SEMVER = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
Problems = list[str]


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def check_helm_chart(obj: dict) -> Problems:
    spec, problems = _spec(obj), []
    if not spec.get("chart") and not spec.get("chartContent"):
        problems.append("spec.chart or spec.chartContent is required")
    if spec.get("chart") and not spec.get("chartContent"):
        if not SEMVER.match(str(spec.get("version", ""))):
            problems.append(f"spec.version must pin a chart version, got {spec.get('version')!r}")
        if not spec.get("repo") and not str(spec.get("chart", "")).startswith(("oci://", "https://")):
            problems.append("spec.repo is required for a chart name")
    if not spec.get("targetNamespace"):
        problems.append("spec.targetNamespace is required (else the chart lands in kube-system)")
    values = spec.get("valuesContent")
    if values is not None:
        try:
            parsed = yaml.safe_load(values)
        except yaml.YAMLError as exc:
            problems.append(f"spec.valuesContent is not YAML: {exc}")
        else:
            if parsed is not None and not isinstance(parsed, dict):
                problems.append("spec.valuesContent must be a mapping")
    unknown = set(spec) - {
        "chart", "version", "repo", "repoCA", "repoCAConfigMap", "chartContent", "targetNamespace",
        "createNamespace", "valuesContent", "valuesSecrets", "set", "helmVersion", "bootstrap", "jobImage",
        "timeout", "failurePolicy", "authSecret", "authPassCredentials", "dockerRegistrySecret",
        "insecureSkipTLSVerify", "plainHTTP", "backOffLimit", "podSecurityContext", "securityContext",
    }  # fmt: skip
    if unknown:
        problems.append(f"unknown HelmChart spec fields: {sorted(unknown)}")
    return problems


def check_helm_chart_config(obj: dict) -> Problems:
    problems = []
    if not _spec(obj).get("valuesContent"):
        problems.append("spec.valuesContent is required")
    if obj["metadata"].get("namespace") != "kube-system":
        problems.append("HelmChartConfig must live in kube-system next to the HelmChart it tunes")
    return problems


def check_cluster_issuer(obj: dict) -> Problems:
    spec = _spec(obj)
    kinds = [key for key in ("selfSigned", "ca", "acme", "vault", "venafi") if key in spec]
    problems = [] if len(kinds) == 1 else [f"exactly one issuer type expected, got {kinds}"]
    if "acme" in spec:
        acme = spec["acme"]
        for field in ("server", "email", "privateKeySecretRef", "solvers"):
            if not acme.get(field):
                problems.append(f"spec.acme.{field} is required")
    if "ca" in spec and not spec["ca"].get("secretName"):
        problems.append("spec.ca.secretName is required")
    return problems


def check_certificate(obj: dict) -> Problems:
    spec, problems = _spec(obj), []
    for field in ("secretName", "issuerRef"):
        if not spec.get(field):
            problems.append(f"spec.{field} is required")
    if not spec.get("dnsNames") and not spec.get("commonName") and not spec.get("isCA"):
        problems.append("spec.dnsNames (or commonName) is required")
    if spec.get("issuerRef") and not spec["issuerRef"].get("name"):
        problems.append("spec.issuerRef.name is required")
    return problems


def check_service_monitor(obj: dict) -> Problems:
    spec, problems = _spec(obj), []
    if not (spec.get("selector") or {}).get("matchLabels") and not (spec.get("selector") or {}).get(
        "matchExpressions"
    ):
        problems.append("spec.selector must select the Service")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        problems.append("spec.endpoints is required")
    for index, endpoint in enumerate(endpoints):
        if not endpoint.get("port") and not endpoint.get("targetPort"):
            problems.append(f"spec.endpoints[{index}] needs a named port")
    return problems


def check_prometheus_rule(obj: dict) -> Problems:
    problems = []
    groups = _spec(obj).get("groups") or []
    if not groups:
        problems.append("spec.groups is required")
    for group in groups:
        for rule in group.get("rules") or []:
            if not rule.get("expr"):
                problems.append(f"rule {rule.get('alert') or rule.get('record')} has no expr")
            if not rule.get("alert") and not rule.get("record"):
                problems.append("every rule needs alert or record")
    return problems


def check_ingress_route(obj: dict) -> Problems:
    spec, problems = _spec(obj), []
    if not spec.get("routes"):
        problems.append("spec.routes is required")
    for route in spec.get("routes") or []:
        if not route.get("match") or not route.get("services"):
            problems.append("each route needs match and services")
    return problems


def check_middleware(obj: dict) -> Problems:
    return [] if _spec(obj) else ["spec is required"]


TLS_VERSIONS = {"VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13"}


def check_tls_option(obj: dict) -> Problems:
    spec, problems = _spec(obj), []
    for field in ("minVersion", "maxVersion"):
        if field in spec and spec[field] not in TLS_VERSIONS:
            problems.append(f"spec.{field} must be one of {sorted(TLS_VERSIONS)}, got {spec[field]!r}")
    unknown = set(spec) - {
        "minVersion", "maxVersion", "cipherSuites", "curvePreferences", "clientAuth", "sniStrict",
        "alpnProtocols", "disableSessionTickets", "preferServerCipherSuites",
    }  # fmt: skip
    if unknown:
        problems.append(f"unknown TLSOption spec fields: {sorted(unknown)}")
    return problems


def check_tls_store(obj: dict) -> Problems:
    spec, problems = _spec(obj), []
    if obj["metadata"]["name"] != "default":
        problems.append("Traefik only uses the TLSStore named default")
    default = spec.get("defaultCertificate")
    if default is not None and not default.get("secretName"):
        problems.append("spec.defaultCertificate.secretName is required")
    for index, certificate in enumerate(spec.get("certificates") or []):
        if not certificate.get("secretName"):
            problems.append(f"spec.certificates[{index}].secretName is required")
    unknown = set(spec) - {"defaultCertificate", "certificates", "defaultGeneratedCert"}
    if unknown:
        problems.append(f"unknown TLSStore spec fields: {sorted(unknown)}")
    return problems


CHECKERS: dict[tuple[str, str], Callable[[dict], Problems]] = {
    ("helm.cattle.io/v1", "HelmChart"): check_helm_chart,
    ("helm.cattle.io/v1", "HelmChartConfig"): check_helm_chart_config,
    ("cert-manager.io/v1", "ClusterIssuer"): check_cluster_issuer,
    ("cert-manager.io/v1", "Issuer"): check_cluster_issuer,
    ("cert-manager.io/v1", "Certificate"): check_certificate,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheus_rule,
    ("traefik.io/v1alpha1", "IngressRoute"): check_ingress_route,
    ("traefik.io/v1alpha1", "Middleware"): check_middleware,
    ("traefik.io/v1alpha1", "TLSOption"): check_tls_option,
    ("traefik.io/v1alpha1", "TLSStore"): check_tls_store,
}
