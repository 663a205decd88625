package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The dubbo-go peers live in their own module (test/interop/dubbogo) so the
// main module does not carry dubbo-go's ~380-module graph; they are built
// once per test run.
var (
	dubbogoOnce sync.Once
	dubbogoDir  string
	dubbogoErr  error
)

func dubbogoPeers(t *testing.T) (provider, consumer string) {
	t.Helper()
	dubbogoOnce.Do(func() {
		dubbogoDir, dubbogoErr = os.MkdirTemp("", "weft-dubbogo-")
		if dubbogoErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", dubbogoDir+"/", "./provider", "./consumer")
		cmd.Dir = filepath.Join("..", "interop", "dubbogo")
		// The nested module is outside the main module's workspace.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			dubbogoErr = fmt.Errorf("building the dubbo-go peers: %v\n%s", err, out)
		}
	})
	if dubbogoErr != nil {
		t.Fatal(dubbogoErr)
	}
	return filepath.Join(dubbogoDir, "provider"), filepath.Join(dubbogoDir, "consumer")
}

// TestDubboGoThroughTwoSidecars: a dubbo-go consumer calls a dubbo-go
// provider through two Weft sidecars (consumer -> egress -> ingress ->
// provider); replies, attachments both ways and an exception response
// arrive intact.
func TestDubboGoThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	_, consumerBin := dubbogoPeers(t)
	provAddr := startDubbogoProvider(t)

	_, ingress := startRPCSidecar(t, rpcConfig{StatPrefix: "ingress", Protocols: []string{"dubbo"}},
		staticCluster("up", portOf(t, provAddr)))
	egressW, egress := startRPCSidecar(t, rpcConfig{StatPrefix: "egress",
		VirtualHosts: `[{name: greeter, domains: ["com.weftmesh.interop.Greeter"], routes: [
		  {match: {prefix: "", headers: [{name: group, string_match: {exact: g1}}, {name: version, string_match: {exact: "1.0.0"}}]},
		   route: {cluster: remote, timeout: 5s}}]}]`},
		staticCluster("remote", portOf(t, ingress)))

	const n = 500
	out, err := exec.Command(consumerBin, "-addr", egress, "-n", fmt.Sprint(n), "-c", "8", "-timeout", "5s", "-log-level", "error").Output()
	var res struct {
		OK              int    `json:"ok"`
		Failed          int    `json:"failed"`
		AttachmentsOK   int    `json:"attachments_ok"`
		FailCallErrored bool   `json:"fail_call_errored"`
		FirstError      string `json:"first_error"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("consumer output %q: %v (exit: %v)", out, jerr, err)
	}
	if err != nil || res.OK != n || res.Failed != 0 || res.AttachmentsOK != n || !res.FailCallErrored {
		t.Fatalf("dubbo-go consumer through two sidecars: %+v (exit: %v)", res, err)
	}
	labels := []string{"stat_prefix=egress", "protocol=dubbo", "service=com.weftmesh.interop.Greeter", "method=SayHello"}
	if v := egressW.metricValue("weft_rpc_method_requests_total", labels...); v < n {
		t.Errorf("weft_rpc_method_requests_total for the Greeter = %v, want >= %d", v, n)
	}
}

// startDubbogoProvider starts the dubbo-go provider with args (after -addr
// and -log-level) on a fresh port and waits for READY; it returns the address.
func startDubbogoProvider(t *testing.T, args ...string) string {
	t.Helper()
	providerBin, _ := dubbogoPeers(t)
	ln := freeListener(t)
	addr := ln.Addr().String()
	_ = ln.Close()
	prov := exec.Command(providerBin, append([]string{"-addr", addr, "-log-level", "error"}, args...)...)
	stdout, err := prov.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var provErr syncBuffer
	prov.Stderr = &provErr
	if err := prov.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prov.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = prov.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = prov.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dubbo-go provider %v stderr:\n%s", args, provErr.String())
		}
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "READY") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("dubbo-go provider %v exited before READY:\n%s", args, provErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("dubbo-go provider %v did not start:\n%s", args, provErr.String())
	}
	return addr
}
