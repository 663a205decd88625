package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/app"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/gctune"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "Weft: a service-mesh data plane (sidecar and gateway)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newStart(), newValidate(), newVersion(), newDemo(), newRegistry(), newControlPlane())
	return root
}

func newLogger(level string) (*slog.Logger, *slog.LevelVar, error) {
	lv := &slog.LevelVar{}
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})), lv, nil
}

func newStart() *cobra.Command {
	var file, level, adminAddr, adminPath string
	var drain time.Duration
	var heapFloorMiB uint64
	cmd := &cobra.Command{
		Use:   "start -c FILE",
		Short: "Run the data plane with an Envoy v3 bootstrap (YAML or JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, lv, err := newLogger(level)
			if err != nil {
				return err
			}
			b, err := config.Load(file)
			if err != nil {
				printConfigErrors(err)
				return errors.New("invalid configuration")
			}
			defer gctune.Start(heapFloorMiB << 20).Stop()
			a, err := app.New(b, app.Options{Logger: log, LogLevel: lv, DrainTimeout: drain, AdminAddress: adminAddr})
			if err != nil {
				printConfigErrors(err)
				return errors.New("cannot start")
			}
			a.Start()
			if adminPath != "" {
				if err := os.WriteFile(adminPath, []byte(a.AdminAddr()+"\n"), 0o644); err != nil {
					a.Shutdown(context.Background())
					return fmt.Errorf("--admin-address-path: %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			<-ctx.Done()
			log.Info("signal received, draining", "drain_timeout", drain)
			a.Shutdown(context.Background())
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "bootstrap file (Envoy v3, YAML or JSON)")
	cmd.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&drain, "drain-timeout", app.DefaultDrainTimeout, "how long in-flight requests may finish after SIGTERM")
	cmd.Flags().StringVar(&adminAddr, "admin-address", "", "override the bootstrap's admin address (\"-\" disables it)")
	cmd.Flags().StringVar(&adminPath, "admin-address-path", "", "write the bound admin address to this file once serving")
	cmd.Flags().Uint64Var(&heapFloorMiB, "gc-heap-floor-mib", 0,
		"let the heap grow to this many MiB between garbage collections: less GC CPU under load for up to that much more memory (0: plain GOGC=100; ignored when GOGC or GOMEMLIMIT is set; 32 is the measured suggestion)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newValidate() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a bootstrap file and print every error with its field path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.Load(file)
			var warnings []string
			if err == nil {
				warnings, err = app.Check(b)
			}
			for _, w := range warnings {
				fmt.Fprintln(os.Stderr, "warning:", w)
			}
			if err != nil {
				printConfigErrors(err)
				return errors.New("invalid configuration")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", file)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "bootstrap file")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// printConfigErrors writes one line per problem.
func printConfigErrors(err error) {
	var ce *config.Errors
	if errors.As(err, &ce) {
		for _, fe := range ce.List {
			fmt.Fprintln(os.Stderr, "error:", fe.Error())
		}
		return
	}
	fmt.Fprintln(os.Stderr, "error:", err)
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "weft %s\n", Version)
		},
	}
}
