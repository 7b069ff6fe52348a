// Command kubelet mirrors upstream k8s.io/kubernetes/cmd/kubelet (Apache-2.0, The Kubernetes
// Authors) so it can be built from the Go module proxy. Built by tests/e2e/tools/build.sh for
// the real-node suite (CGO_ENABLED=0).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // for client metric registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	command := app.NewKubeletCommand(context.Background())
	code := cli.Run(command)
	os.Exit(code)
}
