"""The fleet lab: a real Kubernetes control plane per stack of the checkout, on 127.0.0.1 (see runtime)."""
