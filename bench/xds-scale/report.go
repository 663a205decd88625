package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// med returns the median over runs of f (the lower middle for an even
// count).
func med[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	return v[(len(v)-1)/2]
}

// each lists f over runs, for the spread lines.
func each[T any](xs []T, f func(T) float64, format string) string {
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf(format, f(x)))
	}
	return strings.Join(out, " / ")
}

func msOf(d time.Duration) float64 { return float64(d) / 1e6 }

const mebi = 1 << 20

// render prints the Markdown report: every figure is the median over runs.
func render(w io.Writer, o options, rs []*result) {
	r0 := rs[0]
	fmt.Fprintf(w, "# xds-scale %s\n\n", time.Now().UTC().Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(w, "%s, GOMAXPROCS=%d, %s. Every figure is the median of %d run(s), each a fresh process.\n\n", r0.Go, r0.Procs, r0.CPU, len(rs))
	fmt.Fprintf(w, "Clock overhead of one timed region (time.Now + time.Since), included in every per-call figure: p50 %.0f ns, p99 %.0f ns.\n\n",
		med(rs, func(r *result) float64 { return r.Clock.P50 }), med(rs, func(r *result) float64 { return r.Clock.P99 }))
	if r0.RDS != nil {
		var rr []*rdsResult
		for _, r := range rs {
			rr = append(rr, r.RDS)
		}
		renderRDS(w, o, rr)
	}
	for j := range r0.EDS {
		var er []*edsResult
		for _, r := range rs {
			er = append(er, r.EDS[j])
		}
		if j == 0 {
			fmt.Fprintf(w, "## EDS: one cluster, %d endpoints in %d localities", o.endpoints, localities)
			if o.meta {
				fmt.Fprintf(w, ", Istio-style metadata on each")
			}
			fmt.Fprintf(w, "\n\nClusterLoadAssignment: %.1f MiB on the wire. Host stats exported to a stats.Store, as weft wires it. Each push is a separate UpdateEndpoints call; \"1 endpoint\" and \"10%%\" pushes alternate between two assignments, so each changes exactly that many addresses.\n\n", float64(er[0].WireBytes)/mebi)
		}
		renderEDS(w, o, er)
	}
}

func renderRDS(w io.Writer, o options, rr []*rdsResult) {
	m := func(f func(*rdsResult) float64) float64 { return med(rr, f) }
	fmt.Fprintf(w, "## RDS: %d virtual hosts, %d routes\n\n", o.vhosts, o.routes)
	fmt.Fprintf(w, "DiscoveryResponse: %.1f MiB on the wire. %d distinct requests per mix, %d timed passes.\n\n", float64(rr[0].WireBytes)/mebi, o.requests, o.passes)

	fmt.Fprintf(w, "### Memory of the compiled table\n\n| measure | MiB | bytes/route |\n|---|---|---|\n")
	row := func(name string, f func(*rdsResult) float64) {
		v := m(f)
		fmt.Fprintf(w, "| %s | %.1f | %.0f |\n", name, v/mebi, v/float64(o.routes))
	}
	row("heap in use, delta after GC", func(r *rdsResult) float64 { return float64(r.HeapInuse) })
	row("live heap (HeapAlloc), delta after GC", func(r *rdsResult) float64 { return float64(r.HeapAlloc) })
	row("process RSS, delta after GC + FreeOSMemory", func(r *rdsResult) float64 { return float64(r.RSS) })
	if rr[0].PeakOK {
		row("peak RSS while decoding, validating and compiling, over before", func(r *rdsResult) float64 { return float64(r.PeakRSS) })
	}
	fmt.Fprintf(w, "\nFirst apply (cold process): decode %.0f ms, ValidateAll %.0f ms, Compile %.0f ms.\n\n",
		m(func(r *rdsResult) float64 { return msOf(r.First.Decode) }),
		m(func(r *rdsResult) float64 { return msOf(r.First.Validate) }),
		m(func(r *rdsResult) float64 { return msOf(r.First.Compile) }))

	fmt.Fprintf(w, "### Match latency per request (ns, per-call clock)\n\n")
	fmt.Fprintf(w, "Table.Route on the `*http1.RequestHead` weft parses into. Uniform mix: 90%% hits on a random route of a uniformly random virtual host (every authority form: FQDN, short name, cluster IP, with and without port, upper case, wildcard), 1%% the last route of the last virtual host, 4.5%% unknown hosts, 4.5%% known hosts with a path no route takes. Each request's headers are read just before its timed call, as they are in cache right after parsing (\"not in cache\" skips that).\n\n")
	fmt.Fprintf(w, "| requests | samples | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n")
	drow := func(name string, f func(*rdsResult) dist) {
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f |\n", name, f(rr[0]).N,
			m(func(r *rdsResult) float64 { return f(r).P50 }), m(func(r *rdsResult) float64 { return f(r).P90 }),
			m(func(r *rdsResult) float64 { return f(r).P99 }), m(func(r *rdsResult) float64 { return f(r).P999 }),
			m(func(r *rdsResult) float64 { return f(r).Max }))
	}
	for c := range numClasses {
		drow(c.String(), func(r *rdsResult) dist { return r.Match[c] })
	}
	drow("**uniform mix, all**", func(r *rdsResult) dist { return r.All })
	drow("uniform mix, request not in cache", func(r *rdsResult) dist { return r.Cold })
	drow("**Zipf(1.1) mix over virtual hosts, all**", func(r *rdsResult) dist { return r.Zipf })
	fmt.Fprintf(w, "\nMean without a clock per call (reading the request + Route): uniform %.0f ns, Zipf %.0f ns per request. p99 of the uniform mix per run: %s ns.\n\n",
		m(func(r *rdsResult) float64 { return r.MeanNs }), m(func(r *rdsResult) float64 { return r.ZipfMeanNs }),
		each(rr, func(r *rdsResult) float64 { return r.All.P99 }, "%.0f"))

	fmt.Fprintf(w, "### Full RDS update while a reader matches (%d updates per run, ms)\n\n", o.updates)
	fmt.Fprintf(w, "| step | median | max |\n|---|---|---|\n")
	step := func(name string, f func(*rdsResult) stat) {
		fmt.Fprintf(w, "| %s | %.1f | %.1f |\n", name,
			m(func(r *rdsResult) float64 { return msOf(f(r).Median) }), m(func(r *rdsResult) float64 { return msOf(f(r).Max) }))
	}
	step("decode DiscoveryResponse + RouteConfiguration (proto.Unmarshal, Any.UnmarshalTo)", func(r *rdsResult) stat { return r.Decode })
	step("ValidateAll (protoc-gen-validate)", func(r *rdsResult) stat { return r.Validate })
	step("router.Compile (includes its own rc.Validate)", func(r *rdsResult) stat { return r.Compile })
	step("StaticRoutes.Store (atomic swap)", func(r *rdsResult) stat { return r.Swap })
	step("**total**", func(r *rdsResult) stat { return r.Total })
	step("(rc.Validate alone, for reference: the part of Compile that repeats ValidateAll)", func(r *rdsResult) stat { return r.ValidateOnly })
	fmt.Fprintf(w, "\nTotal per run (median): %s ms.\n\n", each(rr, func(r *rdsResult) float64 { return msOf(r.Total.Median) }, "%.0f"))
	fmt.Fprintf(w, "Reader goroutine: %s matches against %s distinct tables per run; every table it loaded was whole (never nil, all %d virtual hosts, each answer the expected `*Route` of the table it loaded). Its per-call latency during the updates (GC and compile share the 2 cores): p50 %.0f, p99 %.0f, p99.9 %.0f, max %.0f ns.\n\n",
		each(rr, func(r *rdsResult) float64 { return float64(r.ReaderMatches) }, "%.0f"),
		each(rr, func(r *rdsResult) float64 { return float64(r.ReaderTables) }, "%.0f"), o.vhosts,
		m(func(r *rdsResult) float64 { return r.Reader.P50 }), m(func(r *rdsResult) float64 { return r.Reader.P99 }),
		m(func(r *rdsResult) float64 { return r.Reader.P999 }), m(func(r *rdsResult) float64 { return r.Reader.Max }))
}

func renderEDS(w io.Writer, o options, er []*edsResult) {
	m := func(f func(*edsResult) float64) float64 { return med(er, f) }
	n := o.endpoints
	fmt.Fprintf(w, "### %s\n\n| UpdateEndpoints push | pushes per run | median ms | max ms |\n|---|---|---|---|\n", er[0].Policy)
	row := func(name string, f func(*edsResult) stat) {
		fmt.Fprintf(w, "| %s | %d | %.1f | %.1f |\n", name, f(er[0]).Runs,
			m(func(r *edsResult) float64 { return msOf(f(r).Median) }), m(func(r *edsResult) float64 { return msOf(f(r).Max) }))
	}
	row(fmt.Sprintf("first: %d new endpoints into an empty cluster", n), func(r *edsResult) stat { return r.First })
	row("1 endpoint replaced", func(r *edsResult) stat { return r.One })
	row(fmt.Sprintf("10%% replaced (%d)", n/10), func(r *edsResult) stat { return r.Tenth })
	row("unchanged re-push", func(r *edsResult) stat { return r.Same })
	row("(xDS client side, not in the above: proto.Unmarshal + ValidateAll)", func(r *edsResult) stat { return r.Decode })
	per := func(f func(*edsResult) int64) float64 {
		return m(func(r *edsResult) float64 { return float64(f(r)) / float64(n) })
	}
	fmt.Fprintf(w, "\nFirst push per run (median ms): %s.\n\n", each(er, func(r *edsResult) float64 { return msOf(r.First.Median) }, "%.0f"))
	fmt.Fprintf(w, "Memory per endpoint retained after the first push (heap in use after GC; includes the decoded assignment while the manager keeps it as `Cluster.lastCLA`): **%.0f B**; live heap %.0f B; process RSS delta %.1f MiB. The decoded ClusterLoadAssignment alone is %.0f B per endpoint.\n\n",
		per(func(r *edsResult) int64 { return r.HeapInuse }), per(func(r *edsResult) int64 { return r.HeapAlloc }),
		m(func(r *edsResult) float64 { return float64(r.RSS) / mebi }), per(func(r *edsResult) int64 { return r.Proto }))
	fmt.Fprintf(w, "Cluster.Pick after the pushes (ns, per-call clock): p50 %.0f, p99 %.0f, p99.9 %.0f, max %.0f; mean without a clock per call %.0f ns.\n\n",
		m(func(r *edsResult) float64 { return r.Pick.P50 }), m(func(r *edsResult) float64 { return r.Pick.P99 }),
		m(func(r *edsResult) float64 { return r.Pick.P999 }), m(func(r *edsResult) float64 { return r.Pick.Max }),
		m(func(r *edsResult) float64 { return r.PickMeanNs }))
}
