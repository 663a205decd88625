package accesslog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustCompile(t testing.TB, s string) *Format {
	t.Helper()
	f, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLoggerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(path, mustCompile(t, "%RESPONSE_CODE% %ROUTE_NAME%\n"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 250 {
				l.Log(&Entry{Status: 200 + g, RouteName: "r"})
			}
		})
	}
	wg.Wait()
	l.Flush()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 1000 {
		t.Errorf("after Flush: %d lines, want 1000", n)
	}
	l.Log(&Entry{Status: 404})
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l.Log(&Entry{Status: 500}) // after Close: discarded
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 1001 || lines[1000] != "404 -" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	for _, ln := range lines[:1000] {
		if !strings.HasSuffix(ln, " r") || len(ln) != 5 {
			t.Fatalf("torn line %q", ln)
		}
	}
}

func TestLoggerPeriodicFlush(t *testing.T) {
	w := newNotifyWriter()
	l := New(w, mustCompile(t, "%RESPONSE_CODE%\n"))
	t.Cleanup(func() { l.Close() })
	l.Log(&Entry{Status: 204})
	select {
	case got := <-w.writes:
		if got != "204\n" {
			t.Errorf("wrote %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("line not flushed within the flush interval")
	}
}

func TestLoggerReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l, err := Open(path, mustCompile(t, "%RESPONSE_CODE%\n"))
	if err != nil {
		t.Fatal(err)
	}
	l.Log(&Entry{Status: 200})
	l.Flush()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Log(&Entry{Status: 201})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{path + ".1": "200\n", path: "201\n"} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s = %q, want %q", p, b, want)
		}
	}
}

func TestLoggerDropsWhenDiskStalls(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l := New(w, mustCompile(t, strings.Repeat("x", 1023)+"\n"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 { // 10 MB against a 4 MB bound
			l.Log(&Entry{})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked while the writer stalled")
	}
	if l.Dropped() == 0 {
		t.Error("no line dropped")
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLoggerWriteError(t *testing.T) {
	l := New(errWriter{}, mustCompile(t, "x\n"))
	l.Log(&Entry{})
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Close = %v, want the write error", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", mustCompile(t, "x")); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir"), mustCompile(t, "x")); err == nil {
		t.Error("bad path accepted")
	}
	if _, err := Open("/dev/stdout", nil); err == nil {
		t.Error("nil format accepted")
	}
	l, err := Open("/dev/stdout", mustCompile(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Error(err)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}

func TestLoggerLogAllocs(t *testing.T) {
	l := New(discard{}, mustCompile(t, DefaultFormat))
	t.Cleanup(func() { l.Close() })
	e := testEntry()
	for range 100 { // warm the pool and the pending buffers
		l.Log(e)
	}
	l.Flush()
	if n := testing.AllocsPerRun(100, func() { l.Log(e) }); n > 0.05 {
		t.Errorf("Log allocates %v times per line, want 0", n)
	}
}

func BenchmarkLoggerLog(b *testing.B) {
	l := New(discard{}, mustCompile(b, DefaultFormat))
	defer l.Close()
	e := testEntry()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(e)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

type blockingWriter struct{ release chan struct{} }

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

type notifyWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes chan string
}

func newNotifyWriter() *notifyWriter { return &notifyWriter{writes: make(chan string, 16)} }

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.writes <- string(p):
	default:
	}
	return len(p), nil
}
