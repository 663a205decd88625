package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/registry/embedded"
)

// newRegistry is `weft registry`: the embedded service registry that the
// sidecars' mesh agents share when no etcd or ZooKeeper is at hand.
func newRegistry() *cobra.Command {
	var addr, level string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Serve the embedded service registry (for sidecars configured with registry kind embedded)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, _, err := newLogger(level)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			srv := embedded.NewServer(embedded.ServerOptions{SessionTTL: ttl, Logger: log})
			fmt.Fprintf(cmd.OutOrStdout(), "weft registry listening on %s\n", ln.Addr())
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case <-ctx.Done():
				return srv.Close()
			case err := <-errc:
				return err
			}
		},
	}
	cmd.Flags().StringVar(&addr, "address", "127.0.0.1:18500", "listen address")
	cmd.Flags().DurationVar(&ttl, "session-ttl", 10*time.Second, "how long a sidecar's registrations outlive its last heartbeat")
	cmd.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}
