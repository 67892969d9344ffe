"""The Kubernetes Container Runtime Interface (CRI), as much of it as kubepki speaks.

``api.proto`` is a subset of ``k8s.io/cri-api``'s ``pkg/apis/runtime/v1/api.proto``
(kubernetes/cri-api): package ``runtime.v1``, the ``RuntimeService`` calls kubepki
and its tests make, and the fields they read or set, each with its upstream
field number. Protobuf skips the fields it does not know, so this subset reads
what containerd, CRI-O and cri-dockerd send.

The modules beside it are generated and committed; do not edit them:

- ``api_pb2.py`` and ``api_pb2.pyi``: the messages and their types;
- ``api_pb2_grpc.py``: ``RuntimeServiceStub`` (clients) and the servicer base.

Regenerate them with ``nox -s protos``, which pins ``grpcio-tools`` 1.62: its
code needs no newer runtime than ``protobuf`` 4.25 and ``grpcio`` 1.60 (the
floors of the ``cri`` extra), and loads without warnings on current releases.
Newer generators write a version check that would raise those floors.

Nothing here is imported by ``import kubepki``; :mod:`kubepki.restarts.methods._cri`
imports these modules, and ``grpc``, only when it makes a call.
"""
