"""Real parts for tests and the lab: the Go-built Kubernetes control plane and BGP peers (FRR,
BIRD, GoBGP) in network namespaces. Adapters: they start processes and touch the system."""
