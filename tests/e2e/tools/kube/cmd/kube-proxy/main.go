// Command kube-proxy mirrors upstream k8s.io/kubernetes/cmd/kube-proxy (Apache-2.0, The
// Kubernetes Authors) so it can be built from the Go module proxy. Built by
// tests/e2e/tools/build.sh for the real-node suite: Service ClusterIPs (the API server's
// `kubernetes` Service included) routed to pods on the node.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // for client metric registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	command := app.NewProxyCommand()
	code := cli.Run(command)
	os.Exit(code)
}
