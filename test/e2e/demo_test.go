package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freeRun finds n consecutive free loopback ports.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		ok := true
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				continue
			}
			_ = l.Close()
		}
		if ok && base+n < 65535 {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

// TestDemo runs `weft demo` as a user would and follows its banner: the
// frontend answers through its sidecar and reaches a backend through the
// backends' sidecars, and the admin pages show the traffic.
func TestDemo(t *testing.T) {
	base := freeRun(t, 3)
	admin := freeRun(t, 3)
	cmd := exec.Command(weftBin, "demo", "--base-port", fmt.Sprint(base), "--admin-port", fmt.Sprint(admin), "--rps", "20", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.After(30 * time.Second)
	for up := false; !up; {
		select {
		case l := <-lines:
			up = strings.Contains(l, "demo mesh is up")
		case err := <-exited:
			t.Fatalf("demo exited: %v", err)
		case <-deadline:
			t.Fatal("demo did not come up")
		}
	}
	code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", base))
	if code != 200 || !strings.Contains(body, `"service":"frontend"`) || !strings.Contains(body, `"service":"backend-`) {
		t.Fatalf("frontend through the mesh: %d %s", code, body)
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		_, b := httpGet(fmt.Sprintf("http://127.0.0.1:%d/backend/hello", base))
		for _, be := range []string{"backend-1", "backend-2"} {
			if strings.Contains(b, be) {
				seen[be] = true
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("round robin over the backends' sidecars reached %v", seen)
	}
	waitFor(t, 10*time.Second, "background load in the frontend sidecar's stats", func() bool {
		_, m := httpGet(fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", admin))
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, `weft_http_downstream_rq_total{stat_prefix="sidecar-frontend"}`) {
				var v float64
				fmt.Sscan(strings.Fields(l)[1], &v)
				return v > 20
			}
		}
		return false
	})
	if code, _ := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", admin)); code != 200 {
		t.Errorf("admin index: %d", code)
	}
}
