package smoketest

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestProviderConsumer runs the peers over the Dubbo 2 protocol (the default).
func TestProviderConsumer(t *testing.T) {
	rep := runPair(t, nil, nil)
	if rep.Providers != nil {
		t.Errorf("dubbo report has providers %v", rep.Providers)
	}
}

// TestTripleProviderConsumer runs the peers over Triple with a non-default
// version and group.
func TestTripleProviderConsumer(t *testing.T) {
	rep := runPair(t,
		[]string{"-protocol", "tri", "-id", "smoke", "-version", "2.0.0", "-group", "g2"},
		[]string{"-protocol", "tri", "-version", "2.0.0", "-group", "g2"})
	if rep.Providers["smoke"] != 200 {
		t.Errorf("triple report providers %v, want smoke: 200", rep.Providers)
	}
}

type report struct {
	OK              int              `json:"ok"`
	Failed          int              `json:"failed"`
	AttachmentsOK   int              `json:"attachments_ok"`
	FailCallErrored bool             `json:"fail_call_errored"`
	FirstError      string           `json:"first_error"`
	Providers       map[string]int64 `json:"providers"`
}

// runPair builds both programs, starts the provider with provArgs, runs 200
// calls with the consumer (consArgs), checks the report and that the
// provider exits cleanly on SIGTERM.
func runPair(t *testing.T, provArgs, consArgs []string) report {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "../provider", "../consumer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	prov := exec.CommandContext(ctx, filepath.Join(bin, "provider"), append([]string{"-addr", addr}, provArgs...)...)
	prov.Stderr = os.Stderr
	stdout, err := prov.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := prov.Start(); err != nil {
		t.Fatal(err)
	}
	defer prov.Process.Kill()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("provider exited before READY")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("provider not READY in 30s")
	}

	cons := exec.CommandContext(ctx, filepath.Join(bin, "consumer"), append([]string{"-addr", addr, "-n", "200", "-c", "8"}, consArgs...)...)
	cons.Stderr = os.Stderr
	out, err := cons.Output()
	var rep report
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("consumer output %q: %v (exit: %v)", out, jerr, err)
	}
	if err != nil || rep.OK != 200 || rep.Failed != 0 || rep.AttachmentsOK != 200 || !rep.FailCallErrored {
		t.Fatalf("consumer: %v, report %+v", err, rep)
	}

	if err := prov.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := prov.Wait(); err != nil {
		t.Fatalf("provider exit after SIGTERM: %v", err)
	}
	return rep
}
