"""The original sart's sample manifests (manifests/lb/sample, manifests/cni/sample,
docs/design.md and docs/kubernetes.md of terassyi/sart), as they are: what users switching to
us already have. Shared by the model tests and the apiserver tests."""

from __future__ import annotations

from typing import Any

import yaml

ORIGINAL_SAMPLES = """
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata:
  name: default-lb-pool
spec:
  cidr: 10.0.1.0/24
  type: service
  allocType: bit
  autoAssign: true
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata:
  name: non-default-lb-pool
spec:
  cidr: 10.0.100.0/24
  type: service
  allocType: bit
  blockSize: 24
  autoAssign: false
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata:
  name: default-pod-pool
spec:
  cidr: 10.1.0.0/24
  type: pod
  allocType: bit
  blockSize: 29
  autoAssign: true
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata:
  name: non-default-pod-pool
spec:
  cidr: 10.10.0.0/29
  type: pod
  allocType: bit
  blockSize: 32
  autoAssign: false
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressBlock
metadata:
  name: non-default-lb-pool
spec:
  autoAssign: false
  cidr: 10.0.100.0/24
  nodeRef: null
  poolRef: non-default-lb-pool
  type: service
---
apiVersion: sart.terassyi.net/v1alpha2
kind: ClusterBGP
metadata:
  name: clusterbgp-sample-a
spec:
  nodeSelector:
    bgp: a
  asnSelector:
    from: label
  routerIdSelector:
    from: internalAddress
  speaker:
    path: 127.0.0.1:5000
    multipath: true
  peers:
    - peerTemplateRef: bgppeertemplate-sample
      nodeBGPSelector:
        bgp: a
---
apiVersion: sart.terassyi.net/v1alpha2
kind: ClusterBGP
metadata:
  name: clusterbgp-sample-b
spec:
  nodeSelector:
    bgp: b
  asnSelector:
    from: label
  routerIdSelector:
    from: internalAddress
  speaker:
    path: 127.0.0.1:5000
    multipath: true
---
apiVersion: sart.terassyi.net/v1alpha2
kind: NodeBGP
metadata:
  labels:
    bgp: a
  name: sart-worker
spec:
  asn: 65000
  peers:
  - name: bgppeertemplate-sample-sart-worker-65000-9.9.9.9
    spec:
      addr: 9.9.9.9
      asn: 65000
      capabilities: null
      clusterBGPRef: null
      groups:
      - to-router0
      holdTime: null
      keepaliveTime: null
      nodeBGPRef: ""
      speaker:
        multipath: null
        path: ""
        timeout: null
  routerId: 172.18.0.2
  speaker:
    path: 127.0.0.1:5000
---
apiVersion: sart.terassyi.net/v1alpha2
kind: BGPPeer
metadata:
  labels:
    bgp: b
    bgppeer.sart.terassyi.net/node: sart-control-plane
  name: bgppeer-sart-cp-spine0
spec:
  addr: 9.9.9.9
  asn: 65001
  groups:
    - to-spine0
  nodeBGPRef: sart-control-plane
  speaker:
    path: 127.0.0.1:5000
---
apiVersion: sart.terassyi.net/v1alpha2
kind: BGPPeerTemplate
metadata:
  name: bgppeertemplate-spine0
spec:
  asn: 65001
  addr: 9.9.9.9
  groups:
    - to-spine0
---
apiVersion: sart.terassyi.net/v1alpha2
kind: BGPAdvertisement
metadata:
  labels:
    kubernetes.io/service-name: app-svc-cluster
  name: app-svc-cluster-hv4l5-10.0.1.0
  namespace: test
spec:
  attrs: null
  cidr: 10.0.1.0/32
  protocol: ipv4
  type: service
---
apiVersion: sart.terassyi.net/v1alpha2
kind: BlockRequest
metadata:
  name: default-pod-pool-sart-worker
spec:
  pool: default-pod-pool
  node: sart-worker
"""

# One per kind, for the apiserver (names must not clash in its shared, session-wide store).
APISERVER_SAMPLES = [
    ("AddressPool", "non-default-lb-pool"),
    ("AddressPool", "default-pod-pool"),
    ("AddressBlock", "non-default-lb-pool"),
    ("ClusterBGP", "clusterbgp-sample-a"),
    ("NodeBGP", "sart-worker"),
    ("BGPPeer", "bgppeer-sart-cp-spine0"),
    ("BGPPeerTemplate", "bgppeertemplate-spine0"),
    ("BGPAdvertisement", "app-svc-cluster-hv4l5-10.0.1.0"),
    ("BlockRequest", "default-pod-pool-sart-worker"),
]


def original_samples() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(ORIGINAL_SAMPLES))


def one_per_kind() -> list[dict[str, Any]]:
    by_name = {(s["kind"], s["metadata"]["name"]): s for s in original_samples()}
    return [by_name[key] for key in APISERVER_SAMPLES]


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
