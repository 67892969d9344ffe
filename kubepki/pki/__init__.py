"""X.509, keys, PEM, kubeconfig and YAML readers, and issuing certificates like kubeadm."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.pki._certs import (
        CERT_PARSE_ERRORS as CERT_PARSE_ERRORS,
        KEY_ALGORITHMS as KEY_ALGORITHMS,
        KEY_USAGE_NAMES as KEY_USAGE_NAMES,
        MAX_PEM_BYTES as MAX_PEM_BYTES,
        CertFacts as CertFacts,
        PemBlock as PemBlock,
        PrivateKey as PrivateKey,
        PublicKey as PublicKey,
        cert_facts as cert_facts,
        fingerprint as fingerprint,
        is_ip as is_ip,
        iso as iso,
        key_algorithm as key_algorithm,
        load_certificate as load_certificate,
        load_certificates as load_certificates,
        load_private_key as load_private_key,
        load_public_key as load_public_key,
        public_key_der as public_key_der,
        signed_by as signed_by,
        split_pem as split_pem,
        verify_signature as verify_signature,
    )
    from kubepki.pki._issuing import (
        BACKDATE as BACKDATE,
        DEFAULT_VALIDITY as DEFAULT_VALIDITY,
        KUBEADM_LEAF_KEY_USAGES as KUBEADM_LEAF_KEY_USAGES,
        IssuableKey as IssuableKey,
        LeafTemplate as LeafTemplate,
        Signer as Signer,
        b64 as b64,
        build_csr as build_csr,
        cert_to_pem as cert_to_pem,
        check_key_algorithm as check_key_algorithm,
        csr_to_pem as csr_to_pem,
        dump_kubeconfig as dump_kubeconfig,
        edit_kubeconfig as edit_kubeconfig,
        generate_key as generate_key,
        is_issuable as is_issuable,
        key_to_pem as key_to_pem,
        new_kubeconfig as new_kubeconfig,
        random_serial as random_serial,
        rename_kubeconfig_fields as rename_kubeconfig_fields,
        self_signed_ca as self_signed_ca,
        sign_leaf as sign_leaf,
    )
    from kubepki.pki._kubeconfig import (
        Credential as Credential,
        Kubeconfig as Kubeconfig,
        kubeconfig_data as kubeconfig_data,
        parse_kubeconfig as parse_kubeconfig,
    )
    from kubepki.pki._tls import (
        TLSChain as TLSChain,
        fetch_tls_chain as fetch_tls_chain,
    )
    from kubepki.pki._yaml import (
        MAX_DEPTH as MAX_DEPTH,
        MAX_YAML_BYTES as MAX_YAML_BYTES,
        check_events as check_events,
        error_line as error_line,
        load_documents as load_documents,
        load_one as load_one,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_certs": (
            "CERT_PARSE_ERRORS",
            "KEY_ALGORITHMS",
            "MAX_PEM_BYTES",
            "PrivateKey",
            "PublicKey",
            "PemBlock",
            "split_pem",
            "load_certificates",
            "load_certificate",
            "load_private_key",
            "load_public_key",
            "public_key_der",
            "key_algorithm",
            "signed_by",
            "verify_signature",
            "KEY_USAGE_NAMES",
            "CertFacts",
            "is_ip",
            "iso",
            "cert_facts",
            "fingerprint",
        ),
        "_issuing": (
            "BACKDATE",
            "DEFAULT_VALIDITY",
            "IssuableKey",
            "KUBEADM_LEAF_KEY_USAGES",
            "check_key_algorithm",
            "generate_key",
            "key_to_pem",
            "cert_to_pem",
            "csr_to_pem",
            "random_serial",
            "LeafTemplate",
            "Signer",
            "sign_leaf",
            "build_csr",
            "self_signed_ca",
            "is_issuable",
            "b64",
            "dump_kubeconfig",
            "new_kubeconfig",
            "edit_kubeconfig",
            "rename_kubeconfig_fields",
        ),
        "_kubeconfig": (
            "Credential",
            "Kubeconfig",
            "kubeconfig_data",
            "parse_kubeconfig",
        ),
        "_tls": (
            "TLSChain",
            "fetch_tls_chain",
        ),
        "_yaml": (
            "MAX_YAML_BYTES",
            "MAX_DEPTH",
            "load_documents",
            "check_events",
            "load_one",
            "error_line",
        ),
    },
)
