// Command etcd mirrors upstream go.etcd.io/etcd/server/v3/main.go
// (Apache-2.0, The etcd Authors) so it can be built from the Go module proxy:
// the server module's go.mod replaces its sibling modules with local
// directories, so `go install go.etcd.io/etcd/server/v3@vX` is refused.
// Built by tests/e2e/tools/build.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
