"""sart on a real node: the shipped manifests with the CNI component, applied with kubectl to
the real control plane, run as real pods by a kubelet and containerd (sart.testing.node) from
the image scripts/build-image makes; containerd then calls the sart-cni the DaemonSet's init
container installed for a test pod, which gets an address from a pod pool and answers from the
node; a LoadBalancer Service gets an address from a service pool and, through kube-proxy,
carries traffic to that pod.

The manifests are applied as rendered; the node's /opt/cni/bin, /etc/cni/net.d and /run/sart
are directories of its own in its mount namespace (the machine's are never written), and the
images are imported into the node's containerd (nothing is pulled). The timings of every stage
go to the test summary.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from sart.testing.controlplane import CONTROLLERS, ControlPlane
from sart.testing.node import (
    BUSYBOX_IMAGE,
    Node,
    busybox_image,
    find_node_binaries,
    image_cache,
    missing_prerequisites,
)

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
POD_POOL = "10.1.0.0/24"
LB_POOL = "10.2.0.0/28"
NODE_CONTROLLERS = (
    *CONTROLLERS,
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "node-lifecycle-controller",  # takes the not-ready taint off the new Node
)
T = TypeVar("T")


def _script(name: str, *args: str) -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / name), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"scripts/{name} {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout.strip()


class Lab:
    """The control plane, the node, kubectl, and the timings of each stage."""

    def __init__(self, plane: ControlPlane, node: Node, kubectl: Path, tmp: Path) -> None:
        self.plane = plane
        self.node = node
        self.kubectl_path = kubectl
        self.tmp = tmp
        self.began = time.monotonic()
        self.stages: list[tuple[str, float]] = []
        self.notes: list[str] = []

    def stage(self, name: str) -> None:
        self.stages.append((name, time.monotonic() - self.began))
        self.began = time.monotonic()

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.plane.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args))

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float = 180.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout:.0f} s\n{self.state()}")
            time.sleep(0.5)

    def state(self) -> str:
        """Pods, events and the node's logs' tails, for a failure message."""
        done = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.plane.kubeconfig}", "get", "pods",
             "-A", "-o", "wide"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        events = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.plane.kubeconfig}", "get", "events",
             "-A", "--sort-by=.lastTimestamp"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        tails = []
        for log in sorted(self.node.logs.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join([done.stdout, done.stderr, events.stdout[-4000:], *tails])


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    missing = missing_prerequisites()
    if missing:
        pytest.skip(f"a real node cannot run here: {'; '.join(missing)}")
    began = time.monotonic()
    bin_dir = find_node_binaries()
    image = Path(_script("build-image"))
    archives = sorted(image.glob("sart-*.tar"))
    assert archives, f"scripts/build-image left no tarball in {image}"
    kubectl = Path(_script("kubectl", "path") or _script("kubectl", "build"))
    if not kubectl.is_file():
        _script("kubectl", "build")
        kubectl = Path(_script("kubectl", "path"))
    built = time.monotonic() - began
    plane = ControlPlane(controllers=NODE_CONTROLLERS, bind_address="0.0.0.0")
    plane.start()
    node = Node(
        plane,
        "node-1",
        images=[archives[0], busybox_image(image_cache(bin_dir))],
        kube_proxy=True,
        bin_dir=bin_dir,
    )
    try:
        node.start()
        lab = Lab(plane, node, kubectl, tmp_path_factory.mktemp("real-node"))
        lab.stages.append(("builds (cached)", built))
        lab.stages.extend((f"node: {k}", v) for k, v in node.times.items())
        yield lab
    finally:
        node.stop()
        plane.stop()


def rendered(lab: Lab) -> str:
    """`kubectl kustomize` of manifests/ with the CNI component, as it is (the node's
    /opt/cni/bin and /etc/cni/net.d are its own directories in its mount namespace)."""
    tmp = lab.tmp
    (tmp / "sart").symlink_to(MANIFESTS)
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["sart"],
                "components": ["sart/components/cni"],
            }
        )
    )
    return lab.kubectl("kustomize", str(tmp))


POOLS = """
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata: {name: pods}
spec: {cidr: POD_POOL, type: pod, allocType: bit, blockSize: 29, autoAssign: true}
---
apiVersion: sart.terassyi.net/v1alpha2
kind: AddressPool
metadata: {name: lb}
spec: {cidr: LB_POOL, type: service, allocType: bit, blockSize: 28, autoAssign: true}
""".replace("POD_POOL", POD_POOL).replace("LB_POOL", LB_POOL)

WEB = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: BUSYBOX_IMAGE
      imagePullPolicy: Never
      command: [httpd, -f, -p, "8080", -h, /www]
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
""".replace("BUSYBOX_IMAGE", BUSYBOX_IMAGE)


FETCH = """
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.write(opener.open(sys.argv[1], timeout=3).read().decode())
"""


def fetch(node: Node, url: str) -> subprocess.CompletedProcess[str]:
    """An HTTP GET from the node's network namespace (busybox's wget crashes there)."""
    return node.exec(sys.executable, "-c", FETCH, url)


def test_sart_runs_on_a_real_node_and_gives_a_pod_its_address(
    lab: Lab, k8s_report: Callable[[str], None]
) -> None:
    try:
        run_on_the_node(lab)
    finally:  # how far it got, and how long each stage took
        summary = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in lab.stages)
        k8s_report(f"real node: {summary}")
        for note in lab.notes:
            k8s_report(f"real node: {note}")


def run_on_the_node(lab: Lab) -> None:
    node = lab.node
    lab.kubectl("apply", "--server-side", "-f", "-", stdin=rendered(lab))
    lab.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    lab.kubectl("apply", "-f", "-", stdin=POOLS)
    lab.stage("manifests applied")

    def daemonset_ready() -> bool:
        status = lab.get("-n", "sart-system", "daemonset", "sartd").get("status", {})
        return bool(status.get("numberReady") == 1)

    lab.wait(daemonset_ready, "the sartd DaemonSet's pod Ready on the node")
    lab.stage("sartd pod ready")
    conflist = json.loads((node.cni_conf_dir / "10-sart.conflist").read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["sart-cni"]
    assert os.access(node.cni_bin_dir / "sart-cni", os.X_OK)
    lab.wait(node.ready, "the Node Ready (the runtime's network with sart's conflist)")
    lab.stage("node ready")

    def controller_available() -> bool:
        status = lab.get("-n", "sart-system", "deployment", "sart-controller").get("status", {})
        return bool(status.get("availableReplicas", 0) >= 1)

    lab.wait(controller_available, "a sart-controller pod available")
    lab.stage("sart-controller ready")

    lab.kubectl("apply", "-f", "-", stdin=WEB)

    def web_ip() -> str | None:
        pod = lab.get("-n", "default", "pod", "web")
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
        return pod["status"].get("podIP") if ready else None

    ip = lab.wait(web_ip, "the web pod Running and Ready with an address")
    lab.stage("test pod ready")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(POD_POOL)
    blocks = lab.get("addressblocks")["items"]
    assert any(b["spec"].get("nodeRef") == node.name for b in blocks), blocks

    answer = fetch(node, f"http://{ip}:8080/")
    assert answer.stdout == "sart\n", answer
    lab.stage("pod reached from the node")

    def lb_address() -> str | None:
        status = lab.get("-n", "default", "service", "web").get("status", {})
        ingress = status.get("loadBalancer", {}).get("ingress") or []
        return ingress[0].get("ip") if ingress else None

    lb = lab.wait(lb_address, "the Service's LoadBalancer address", timeout=60)
    assert ipaddress.ip_address(lb) in ipaddress.ip_network(LB_POOL)
    lab.stage("LoadBalancer address")

    def through_kube_proxy() -> str | None:
        done = fetch(node, f"http://{lb}/")
        return done.stdout if done.returncode == 0 else None

    assert lab.wait(through_kube_proxy, "traffic to the LoadBalancer address", 60) == "sart\n"
    lab.stage("LoadBalancer traffic through kube-proxy")
    memory = node.resident_memory()
    lab.notes.append(
        "node memory (RSS): "
        + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in memory.items())
        + f", total {sum(memory.values()):.0f} MiB"
    )
