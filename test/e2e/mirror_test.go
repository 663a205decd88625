package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"testing"
	"time"
)

type shadowSeen struct {
	host, path, sum string
}

// TestMirror: the shadow cluster gets a copy with Host suffixed
// "-shadow" (body included); the client gets the primary's answer, even
// when the shadow is slow and fails.
func TestMirror(t *testing.T) {
	t.Parallel()
	primary := newUpstream(t, "primary", nil)
	seen := make(chan shadowSeen, 16)
	shadow := newUpstream(t, "shadow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := sha256.Sum256(b)
		seen <- shadowSeen{r.Host, r.URL.RequestURI(), hex.EncodeToString(h[:])}
		time.Sleep(300 * time.Millisecond) // a slow shadow must not delay the client
		http.Error(w, "shadow failure", 500)
	}))
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/"}
  route: {cluster: primary, request_mirror_policies: [{cluster: shadow}]}
`}, staticCluster("primary", primary.Port), staticCluster("shadow", shadow.Port))
	hc := client()

	start := time.Now()
	r := get(t, hc, base+"/m?q=1", "Host: site.example")
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Errorf("client waited %v: the shadow delayed the response", el)
	}
	if r.Status != 200 || r.Header.Get("X-Upstream") != "primary" {
		t.Fatalf("client got %d from %q, want 200 from primary", r.Status, r.Header.Get("X-Upstream"))
	}
	if e := decodeEcho(t, r); e.Host != "site.example" {
		t.Errorf("primary saw Host %q, want site.example", e.Host)
	}
	select {
	case s := <-seen:
		if s.host != "site.example-shadow" || s.path != "/m?q=1" {
			t.Errorf("shadow saw Host %q path %q, want site.example-shadow /m?q=1", s.host, s.path)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the shadow never received the request")
	}

	// A host with a port keeps the port after the suffix; the body is
	// copied.
	body := bytes.Repeat([]byte("mirror-body-"), 500)
	req, _ := http.NewRequest("POST", base+"/post", bytes.NewReader(body))
	req.Host = "svc.local:8080"
	r = do(t, hc, req)
	if r.Status != 200 || r.Header.Get("X-Upstream") != "primary" {
		t.Fatalf("POST: %d from %q", r.Status, r.Header.Get("X-Upstream"))
	}
	if e := decodeEcho(t, r); e.BodySHA256 != sha256Hex(body) {
		t.Errorf("primary got a different body")
	}
	select {
	case s := <-seen:
		if s.host != "svc.local-shadow:8080" {
			t.Errorf("shadow saw Host %q, want svc.local-shadow:8080", s.host)
		}
		if s.sum != sha256Hex(body) {
			t.Errorf("shadow got a different body")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the shadow never received the POST")
	}
	if primary.Hits() != 2 {
		t.Errorf("primary hits %d, want 2", primary.Hits())
	}
}
