"""The sandbox cluster: a local stand-in for Kubernetes that makes the demo and the end-to-end tests real.

``apiserver`` answers the Kubernetes REST API for the official client; ``controller`` plays the Deployment
controller, the scheduler and the kubelet, starting pods through a pluggable runtime.
"""
