"""Certificates beyond kubeadm's files: TLS Secrets, CA bundles, webhooks, APIServices, endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.objects import probe as probe
    from kubepki.objects._apiclient import (
        RESOURCES as RESOURCES,
        APIError as APIError,
        InsecureSkipTLSVerifyWarning as InsecureSkipTLSVerifyWarning,
        KubeClient as KubeClient,
        Resource as Resource,
        check_live as check_live,
        load_client_pair as load_client_pair,
    )
    from kubepki.objects._bundles import (
        CODES as CODES,
        DEFAULT_WARN_WITHIN as DEFAULT_WARN_WITHIN,
        BundleCheck as BundleCheck,
        BundleRole as BundleRole,
        check_bundle as check_bundle,
        check_chain as check_chain,
        make as make,
        parse_certificates as parse_certificates,
        validity_findings as validity_findings,
    )
    from kubepki.objects._csr import (
        KUBELET_CLIENT_SIGNER as KUBELET_CLIENT_SIGNER,
        KUBELET_SERVING_SIGNER as KUBELET_SERVING_SIGNER,
        CSRApproval as CSRApproval,
        KubeletCSR as KubeletCSR,
        KubeletCSRList as KubeletCSRList,
        approve_kubelet_csrs as approve_kubelet_csrs,
        list_kubelet_csrs as list_kubelet_csrs,
        review_csr as review_csr,
    )
    from kubepki.objects._objects import (
        MAX_OBJECT_BYTES as MAX_OBJECT_BYTES,
        ObjectInventory as ObjectInventory,
        ObjectItem as ObjectItem,
        ObjectItemKind as ObjectItemKind,
        Source as Source,
        check_object_iter as check_object_iter,
        check_objects as check_objects,
        iter_objects as iter_objects,
        object_item as object_item,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_apiclient": (
            "APIError",
            "InsecureSkipTLSVerifyWarning",
            "Resource",
            "RESOURCES",
            "load_client_pair",
            "KubeClient",
            "check_live",
        ),
        "_csr": (
            "KUBELET_CLIENT_SIGNER",
            "KUBELET_SERVING_SIGNER",
            "CSRApproval",
            "KubeletCSR",
            "KubeletCSRList",
            "approve_kubelet_csrs",
            "list_kubelet_csrs",
            "review_csr",
        ),
        "_bundles": (
            "DEFAULT_WARN_WITHIN",
            "CODES",
            "make",
            "BundleRole",
            "BundleCheck",
            "validity_findings",
            "parse_certificates",
            "check_bundle",
            "check_chain",
        ),
        "_objects": (
            "MAX_OBJECT_BYTES",
            "Source",
            "ObjectItemKind",
            "ObjectItem",
            "ObjectInventory",
            "object_item",
            "iter_objects",
            "check_objects",
            "check_object_iter",
        ),
    },
    ("probe",),
)
