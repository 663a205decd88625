package e2e

// h2spec (github.com/summerwind/h2spec, a go.mod tool) run against weft's
// HTTP/2 server: h2c by prior knowledge and h2 over TLS by ALPN.

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

// h2specMinPass is how many of h2spec's 145 cases must pass, for h2c and
// for h2 over TLS alike. Observed (x/net v0.62.0 server inside weft):
// h2c 141 passed, TLS 142 passed. The cases h2spec reports as errors:
//   - 3.5 Sends invalid connection preface (h2c only): with codec AUTO a
//     bad preface is not "PRI", so weft treats the connection as HTTP/1.1
//     and answers in HTTP/1 instead of GOAWAY (passes over TLS, where
//     ALPN picked h2). Inherent to sniffing.
//   - 6.5.3 Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE (last
//     value 1, then a request): weft acks the SETTINGS and closes the
//     connection instead of sending the 1-byte DATA frame. Likely a weft
//     bug in writing a response under a 1-byte window.
//   - 8.1.2.2 a connection-specific header field, and TE other than
//     "trailers": weft answers the stream (a 51-byte DATA frame with
//     END_STREAM on stream 1) instead of treating it as malformed
//     (RST_STREAM or GOAWAY PROTOCOL_ERROR).
const h2specMinPass = 141

// h2specReport is h2spec's JUnit XML report.
type h2specReport struct {
	Suites []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Package   string      `xml:"package,attr"`
			ClassName string      `xml:"classname,attr"`
			Failure   *h2specText `xml:"failure"`
			Error     *h2specText `xml:"error"`
			Skipped   *h2specText `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// h2specText is the text of a failure, error or skip.
type h2specText struct {
	Content string `xml:",innerxml"`
}

// h2specResult counts one run.
type h2specResult struct {
	tests, passed, failed, errored, skipped int
	failing                                 []string
}

func parseH2specReport(b []byte) (h2specResult, error) {
	var rep h2specReport
	if err := xml.Unmarshal(b, &rep); err != nil {
		return h2specResult{}, err
	}
	var r h2specResult
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			r.tests++
			name := c.Package + " " + s.Name + ": " + c.ClassName
			switch {
			case c.Failure != nil:
				r.failed++
				r.failing = append(r.failing, name+": "+oneLine(c.Failure.Content))
			case c.Error != nil:
				r.errored++
				r.failing = append(r.failing, name+" (error): "+oneLine(c.Error.Content))
			case c.Skipped != nil:
				r.skipped++
			default:
				r.passed++
			}
		}
	}
	return r, nil
}

// buildH2spec builds the h2spec tool into dir.
func buildH2spec(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "h2spec")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/summerwind/h2spec/cmd/h2spec")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building h2spec: %v\n%s", err, out)
	}
	return bin
}

func TestH2Spec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := buildH2spec(t, dir)

	// An h2c upstream that reads request bodies and answers 200 with a
	// small body.
	up := newUpstream(t, "h2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello from h2 upstream\n")
	}), withH2c)
	ca := tlstest.NewCA("h2spec ca")
	h := hcmConfig{Routes: routeTo("up")}
	w := startWeft(t, bootstrap(t, []M{
		httpListener(t, "h2c", h),
		h2TLSListener(t, dir, "h2tls", ca.Leaf("127.0.0.1", "localhost"), h),
	}, h2Cluster("up", up.Port)))

	run := func(t *testing.T, addr string, extra ...string) {
		host, port, _ := net.SplitHostPort(addr)
		report := filepath.Join(t.TempDir(), "report.xml")
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		args := append([]string{"-h", host, "-p", port, "-o", "5", "-j", report}, extra...)
		cmd := exec.CommandContext(ctx, bin, args...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run() // non-zero when any case fails; the report decides
		if ctx.Err() != nil {
			t.Fatalf("h2spec did not finish: %v\n%s", ctx.Err(), tail(out.String(), 4000))
		}
		b, rerr := os.ReadFile(report)
		if rerr != nil {
			t.Fatalf("h2spec wrote no report (%v): %v\n%s", err, rerr, tail(out.String(), 4000))
		}
		r, perr := parseH2specReport(b)
		if perr != nil {
			t.Fatalf("parsing the h2spec report: %v", perr)
		}
		t.Logf("h2spec %s: %d tests, %d passed, %d failed, %d errors, %d skipped in %v",
			strings.Join(extra, " "), r.tests, r.passed, r.failed, r.errored, r.skipped, time.Since(start).Round(time.Millisecond))
		for _, f := range r.failing {
			t.Logf("  failing: %s", f)
		}
		if r.tests < 100 {
			t.Errorf("h2spec ran only %d cases:\n%s", r.tests, tail(out.String(), 4000))
		}
		if r.passed < h2specMinPass {
			t.Errorf("h2spec: %d passed, want >= %d\n%s", r.passed, h2specMinPass, tail(out.String(), 8000))
		}
	}
	h2cAddr, tlsAddr := w.Listener("h2c"), w.Listener("h2tls")
	t.Run("h2c", func(t *testing.T) { run(t, h2cAddr) })
	t.Run("tls", func(t *testing.T) { run(t, tlsAddr, "-t", "-k") })
	biAlive(t, w)
}

// oneLine squeezes a report message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("...%s", s[len(s)-n:])
}
