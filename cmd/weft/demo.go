package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/demo"
)

func newDemo() *cobra.Command {
	var o demo.Options
	var level string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a small local mesh on loopback with sample services, sidecars and load",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, lv, err := newLogger(level)
			if err != nil {
				return err
			}
			o.Logger, o.LogLevel = log, lv
			o.Out = cmd.OutOrStdout()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return demo.Run(ctx, o)
		},
	}
	cmd.Flags().IntVar(&o.BasePort, "base-port", 10000, "first sidecar listener port (13 are used: base..base+12)")
	cmd.Flags().IntVar(&o.AdminBase, "admin-port", 9901, "first admin port (nine are used)")
	cmd.Flags().IntVar(&o.RPS, "rps", 5, "background requests per second through the mesh (0 = none)")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "where configs and access logs go (default: a new temp dir)")
	cmd.Flags().StringVar(&level, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
