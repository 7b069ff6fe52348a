// Command kube-scheduler mirrors upstream k8s.io/kubernetes/cmd/kube-scheduler
// (Apache-2.0, The Kubernetes Authors) so it can be built from the Go module
// proxy. Built by tests/e2e/tools/build.sh.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register" // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version" // for version metric registration
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	command := app.NewSchedulerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
