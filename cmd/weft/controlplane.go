package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/controlplane"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
	"github.com/weftmesh/weft/internal/registry/etcd"
	"github.com/weftmesh/weft/internal/registry/zk"
)

// newControlPlane is `weft control-plane`: the built-in control plane that
// compiles mesh rules (and registry endpoints) into xDS for the sidecars.
func newControlPlane() *cobra.Command {
	var o controlplane.Options
	var level, regKind, regAddr, regRoot string
	var check bool
	cmd := &cobra.Command{
		Use:   "control-plane --rules DIR",
		Short: "Serve xDS (ADS) to sidecars from mesh rules in a directory of YAML files (docs/control-plane.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if check {
				warnings, err := controlplane.Check(o.RulesDir)
				for _, w := range warnings {
					fmt.Fprintln(os.Stderr, "warning:", w)
				}
				if err != nil {
					var re *controlplane.RulesError
					if errors.As(err, &re) {
						for _, p := range re.Problems {
							fmt.Fprintln(os.Stderr, "error:", p)
						}
						return errors.New("invalid rules")
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", o.RulesDir)
				return nil
			}
			log, _, err := newLogger(level)
			if err != nil {
				return err
			}
			o.Logger = log
			if regKind != "" {
				reg, err := dialRegistry(regKind, regAddr, regRoot, log)
				if err != nil {
					return err
				}
				defer reg.Close()
				o.Registry, o.RegistryName = reg, regKind
			} else if regAddr != "" {
				return errors.New("--registry-address needs --registry-kind")
			}
			s, err := controlplane.New(o)
			if err != nil {
				return err
			}
			s.Start()
			fmt.Fprintf(cmd.OutOrStdout(), "weft control-plane: xDS on %s, admin on %s, rules from %s\n", s.XDSAddr(), s.AdminAddr(), o.RulesDir)
			if !s.Ready() {
				fmt.Fprintf(os.Stderr, "weft control-plane: the rules are not ready yet; see http://%s/status\n", s.AdminAddr())
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			<-ctx.Done()
			log.Info("signal received, stopping")
			return s.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.RulesDir, "rules", "", "directory of rule files (*.yaml)")
	f.StringVar(&o.XDSAddress, "xds", controlplane.DefaultXDSAddress, "ADS gRPC listen address")
	f.StringVar(&o.AdminAddress, "admin", controlplane.DefaultAdminAddress, `admin listen address (/status, /ready, /config_dump); "-" disables`)
	f.DurationVar(&o.PollInterval, "poll", controlplane.DefaultPoll, "how often the rules directory is checked for changes")
	f.DurationVar(&o.Debounce, "debounce", controlplane.DefaultDebounce, "how long a change must settle before it is loaded")
	f.StringVar(&regKind, "registry-kind", "", "feed endpoints from a registry: embedded, etcd or zookeeper")
	f.StringVar(&regAddr, "registry-address", "", "embedded: host:port; etcd: comma-separated URLs; zookeeper: comma-separated host:port")
	f.StringVar(&regRoot, "registry-root", "", "etcd key prefix (default /weft/services) or ZooKeeper root (default /dubbo)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&check, "check", false, "check the rules, print every problem with file:line, and exit")
	_ = cmd.MarkFlagRequired("rules")
	return cmd
}

// dialRegistry makes a registry client that only watches.
func dialRegistry(kind, addr, root string, log *slog.Logger) (registry.Registry, error) {
	if addr == "" {
		return nil, fmt.Errorf("--registry-kind %s needs --registry-address", kind)
	}
	list := strings.Split(addr, ",")
	switch kind {
	case "embedded":
		return embedded.New(embedded.Options{Address: addr, Logger: log}), nil
	case "etcd":
		return etcd.New(context.Background(), etcd.Options{Endpoints: list, Prefix: root, TTL: 10 * time.Second, Logger: log})
	case "zookeeper":
		return zk.New(zk.Options{Servers: list, Root: root, Logger: log})
	}
	return nil, fmt.Errorf("--registry-kind: unknown registry %q (embedded, etcd, zookeeper)", kind)
}
