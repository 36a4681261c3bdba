//go:build tools

// Package kube pins the real Kubernetes API server and etcd that bwsync's tests start
// (tests/fixtures/kube.py), and the kubectl that runs the documented recipes
// (tests/deploy/test_docs.py). Nothing here ships: `./dev setup` builds the three commands from
// this module into a cache outside the clone, keyed by go.sum.
package kube

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
