// Command weft is the Weft service-mesh data plane: sidecar, gateway and
// the small control-plane pieces, in one binary.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		os.Exit(1)
	}
}
